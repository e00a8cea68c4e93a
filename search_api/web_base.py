"""What every page of the web view (/ui/) stands on: the Jinja2 templates and their
filters, the signed session cookie (sign-in state, CSRF token), and rendering with the
security headers; ``page`` turns errors into HTML pages. The pages are in web.py and
web_*.py.

A signed-in browser carries one cookie: an itsdangerous-signed session (key id,
workspace, CSRF token) keyed by the service's secret. The key is looked up again on
every request, so a removed key ends its sessions at once. Every form post must carry
the session's CSRF token (hidden field ``csrf`` or header ``X-CSRF-Token``), else 403.
"""
from __future__ import annotations

import functools
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from indexer.thumbs import thumbnail_kind
from storage.clock import rfc3339
from storage.errors import Forbidden, ResourceError, Unauthorized

from .auth import READ, Principal
from .observe import note_principal
from .service import ResourceService
from .web_lists import relative_time

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

COOKIE = "resources_session"
SESSION_MAX_AGE = 12 * 3600

#: Pages: only our own scripts, styles and images; no framing by other sites.
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
#: Stored content served under /ui: never runs as a page of this origin (HTML, SVG).
CONTENT_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


# -- templates --------------------------------------------------------------------------------
def human_size(n: Any) -> str:
    try:
        size = float(n)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True)
_env.filters["q"] = lambda value: quote(str(value), safe="")
_env.filters["size"] = human_size
_env.filters["rfc3339"] = rfc3339
_env.filters["ago"] = relative_time
_env.filters["jsonscalar"] = lambda v: json.dumps(v, ensure_ascii=False)
_env.filters["thumbable"] = lambda ctype: thumbnail_kind(ctype) is not None
templates = Jinja2Templates(env=_env)


# -- sessions ---------------------------------------------------------------------------------
@dataclass
class Session:
    csrf: str
    key_id: str | None = None
    workspace: str | None = None
    principal: Principal | None = None


class _Redirect(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def svc(request: Request) -> ResourceService:
    return request.app.state.service


def _serializer(request: Request) -> URLSafeTimedSerializer:
    ser = getattr(request.app.state, "web_serializer", None)
    if ser is None:
        secret = svc(request).signer.secret      # shared by every node of a catalog
        ser = URLSafeTimedSerializer(secret, salt="resources-web-session")
        request.app.state.web_serializer = ser
    return ser


def _read_cookie(request: Request) -> Session | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(request).loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:          # tampered, expired (SignatureExpired) or from another secret
        return None
    if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
        return None
    return Session(data["csrf"], data.get("kid"), data.get("ws"))


def _set_cookie(request: Request, response: Response, session: Session) -> None:
    value = _serializer(request).dumps({"csrf": session.csrf, "kid": session.key_id,
                                        "ws": session.workspace})
    secure = request.url.scheme == "https" or \
        svc(request).settings.public_url.startswith("https:")
    response.set_cookie(COOKIE, value, max_age=SESSION_MAX_AGE, path="/ui", httponly=True,
                        samesite="lax", secure=secure)


async def _signed_in(request: Request) -> Session | None:
    """The session with a key that still exists, or None."""
    session = _read_cookie(request)
    if session is None or not session.key_id:
        return None
    service = svc(request)
    principal = await run_in_threadpool(service.web_principal, session.key_id)
    if principal is None or principal.workspace != session.workspace:
        return None
    # The session's CSRF token doubles as its id: random per sign-in, never reused.
    if await run_in_threadpool(service.keys.session_ended, session.csrf, service.now()):
        return None
    session.principal = principal
    note_principal(request, principal.key_id, principal.workspace)   # the request log line
    return session


async def require_session(request: Request, ws: str, scope: str = READ) -> Session:
    """Signed in (else to the sign-in page), for this workspace (else 404), with scope."""
    session = await _signed_in(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = request.url.path
        raise _Redirect("/ui/login?" + urlencode({"next": target}))
    assert session.principal is not None
    session.principal.require(ws, scope)   # NotFound for another workspace, then Forbidden
    return session


async def read_form(request: Request, session: Session) -> dict[str, str]:
    """The posted form, after its CSRF token matched the session's (else 403)."""
    form = await request.form(max_files=0, max_fields=50)
    token = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(),
                                                             session.csrf.encode()):
        raise Forbidden("missing or invalid CSRF token: reload the page and try again")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def safe_return(value: str | None) -> str | None:
    """A same-origin relative path ("/x", never "//host", "/\\host" or a scheme), or None."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


# -- rendering ----------------------------------------------------------------------------------
def _secure_headers(response: Response, csp: str = PAGE_CSP) -> Response:
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def render(request: Request, name: str, context: dict[str, Any], status: int = 200,
           session: Session | None = None) -> Response:
    ctx = {"session": session, "csrf": session.csrf if session else "",
           "ws": session.workspace if session and session.key_id else None}
    ctx.update(context)
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    if session is not None and _read_cookie(request) is None:
        _set_cookie(request, response, session)
    return _secure_headers(response)


def page(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Errors become HTML pages with the API's status; no session goes to sign-in."""
    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except _Redirect as r:
            return _secure_headers(RedirectResponse(r.url, status_code=303))
        except Unauthorized:
            return _secure_headers(RedirectResponse("/ui/login", status_code=303))
        except ResourceError as exc:
            session = await _signed_in(request)
            return render(request, "error.html", {"status": exc.status, "message": exc.message},
                          exc.status, session)
    return wrapper


def _link_maker(request: Request, base: str, keys: tuple[str, ...]) -> Callable[..., str]:
    """link({"tier": "retained"}) -> the current page's URL with that change, cursor reset."""
    current = {k: request.query_params.get(k) for k in keys if request.query_params.get(k)}

    def link(changes: dict[str, Any] | None = None, keep_cursor: bool = False) -> str:
        params = dict(current)
        for k, v in (changes or {}).items():
            if v in (None, ""):
                params.pop(k, None)
            else:
                params[k] = str(v)
        if not keep_cursor:
            params.pop("cursor", None)
        return base + ("?" + urlencode(params) if params else "")
    return link
