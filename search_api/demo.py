"""`make run`: the service on 127.0.0.1:8080 with the fixtures loaded, ready to try.

Loads every file of fixtures/ into workspace ws-acme once (a marker in the data home
says it was done), binds slot `archive` to `reports/acme`, creates a fresh API key,
prints it with three example commands, then serves.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from storage.config import Settings

from .service import ResourceService

WORKSPACE = "ws-acme"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SKIP = {"README.md", "make_fixtures.py", "slow_pdf.py"}


def load_fixtures(service: ResourceService, workspace: str = WORKSPACE) -> int:
    marker = service.settings.home / f".fixtures-loaded-{workspace}"
    if marker.exists():
        return 0
    service.bind_slot(workspace, "archive", "reports/acme")
    items: list[tuple[dict, bytes]] = []
    for path in sorted(FIXTURES.iterdir()):
        if path.name in SKIP or not path.is_file() or path.name.startswith("."):
            continue
        spec = {"filename": path.name, "flow": "demo-flow", "step": "load-fixtures",
                "workflow-id": "wf-demo-1", "tags": ["fixture"]}
        if path.suffix in (".pdf", ".png", ".csv"):
            spec.update({"slot": "archive", "path": "exports/{{input.year}}",
                         "params": {"input": {"year": "2026"}}})
        items.append((spec, path.read_bytes()))
    items.append(({"type": "kv", "filename": "summary.json", "flow": "demo-flow",
                   "step": "summarize", "workflow-id": "wf-demo-1"},
                  b'{"rows": 7, "status": "ok", "note": "demo result"}'))
    count = len(service.persist_many(workspace, items))
    marker.write_text("ok\n")
    return count


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (checked before a key is minted)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def next_free_port(host: str, port: int) -> int:
    for candidate in range(port + 1, port + 50):
        if port_free(host, candidate):
            return candidate
    return 0


def banner(base: str, key: str, workspace: str = WORKSPACE) -> str:
    """What `make run` prints: the key and the exact exports for the CLI."""
    return f"""
API key for {workspace} (shown once): {key}

Use the CLI against this server (paste into another terminal, in this folder):
  export PATH="$PWD/.venv/bin:$PATH"
  export RESOURCES_API_URL={base}
  export RESOURCES_API_KEY={key}
  export RESOURCES_WORKSPACE={workspace}
  resources status
  resources search revenue --slot archive

  curl -s -H 'Authorization: Bearer {key}' '{base}/v1/{workspace}/resources/search?q=revenue'
  {base}/docs          the HTTP API reference
  {base}/ui/login      the web view (sign in with the key)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--load-only", action="store_true", help="Load fixtures and exit.")
    args = parser.parse_args()
    if not args.load_only and not port_free(args.host, args.port):
        alt = next_free_port(args.host, args.port)
        hint = f"make run PORT={alt}" if alt else "make run PORT=<a free port>"
        print(f"port {args.port} on {args.host} is already in use (another `make run` or "
              f"`resources serve`?); nothing was started. Use: {hint}", file=sys.stderr)
        sys.exit(2)
    settings = Settings.from_env()
    if not os.environ.get("RESOURCES_PUBLIC_URL"):
        settings.public_url = f"http://{args.host}:{args.port}"
    service = ResourceService(settings)
    loaded = load_fixtures(service)
    print(f"data home: {settings.home} ({loaded} fixtures loaded now)")
    if args.load_only:
        service.close()
        return
    _, key = service.keys.create(WORKSPACE, ["resources.read", "resources.write",
                                             "workspace.admin"], "make run", service.now())
    print(banner(settings.public_url, key), flush=True)
    import uvicorn

    from .app import create_app
    uvicorn.run(create_app(service=service), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
