"""A real `resources serve` (uvicorn) on 127.0.0.1 at a free port, for the HTTP API tests.

Import the fixtures into a test module::

    from server import api_server, admin, ...   # noqa: F401

``api_server`` is one shared server per session (tests that only read or that write
resources of their own). Modules that must see a quiet server (memory, listing
unchanged, fuzzing) use ``start_server`` under their own module-scoped fixture.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

VENV_BIN = Path(sys.executable).parent
RESOURCES = str(VENV_BIN / "resources") if (VENV_BIN / "resources").exists() else "resources"
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

ALL_SCOPES = "resources.read,resources.write,workspace.admin"
#: name -> (workspace, scopes) of the keys every server gets.
KEY_SPECS = {
    "admin": ("ws-acme", ALL_SCOPES),
    "read": ("ws-acme", "resources.read"),
    "write": ("ws-acme", "resources.read,resources.write"),
    "other": ("ws-other", ALL_SCOPES),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(home: Path, clock_file: Path | None = None, public_url: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RESOURCES_")}
    env["RESOURCES_HOME"] = str(home)
    # These servers answer writes once indexed: the tests read their own writes through
    # search at once. Tests of durable acknowledgement set "durable" (test_write_path).
    env["RESOURCES_WRITE_ACK"] = "indexed"
    # One process, so tests that look at the server's pid (memory) see the one serving.
    env["RESOURCES_WORKERS"] = "1"
    # No embedding model in these servers (fast, lean); the semantic tests start their own.
    env["RESOURCES_SEMANTIC"] = "off"
    if clock_file is not None:
        env["RESOURCES_CLOCK_FILE"] = str(clock_file)
    if public_url is not None:
        env["RESOURCES_PUBLIC_URL"] = public_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args: str, env: dict, stdin: bytes | None = None, check: bool = True,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([RESOURCES, *args], env=env, input=stdin, capture_output=True,
                          timeout=60, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"resources {' '.join(args)} exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')}")
    return proc


def create_key(home: Path, workspace: str, scopes: str, env: dict | None = None) -> str:
    env = env or base_env(home)
    out = cli("keys", "create", "--workspace", workspace, "--scope", scopes,
              "--format", "json", env=env)
    return json.loads(out.stdout)["data"]["key"]


@dataclass
class Server:
    base: str
    port: int
    home: Path
    clock_file: Path
    pid: int
    proc: subprocess.Popen
    keys: dict[str, str] = field(default_factory=dict)
    log: Path | None = None

    # -- clock --------------------------------------------------------------------------
    def now(self) -> float:
        return float(self.clock_file.read_text().strip())

    def set_clock(self, epoch: float) -> None:
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(repr(float(epoch)))
        os.replace(tmp, self.clock_file)     # the server never reads a half-written file

    def advance(self, seconds: float) -> None:
        self.set_clock(self.now() + seconds)

    # -- clients ------------------------------------------------------------------------
    def client(self, key: str | None = "admin", **kw) -> httpx.Client:
        """A client with ``Authorization: Bearer`` of the named key (or a raw key)."""
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {self.keys.get(key, key)}"
        return httpx.Client(base_url=self.base, headers=headers,
                            timeout=kw.pop("timeout", 60.0), **kw)

    def env(self, key: str = "admin", workspace: str = "ws-acme") -> dict:
        """Environment of a remote CLI talking to this server."""
        env = base_env(self.home)
        env.pop("RESOURCES_HOME")
        env.update(RESOURCES_API_URL=self.base, RESOURCES_API_KEY=self.keys[key],
                   RESOURCES_WORKSPACE=workspace)
        return env

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stderr_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""


def start_server(tmp: Path, public_url: str | None = None, keys: dict | None = None,
                 extra_env: dict | None = None, timeout: float = 30.0,
                 serve_args: tuple[str, ...] = ()) -> Server:
    """Make a data home under ``tmp``, create keys with the CLI, start the server and
    wait for /healthz. Stop it with ``stop_server``."""
    tmp.mkdir(parents=True, exist_ok=True)
    home = tmp / "home"
    clock_file = tmp / "clock"
    clock_file.write_text(repr(time.time()))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = base_env(home, clock_file, public_url or base)
    if extra_env:
        env.update(extra_env)
    made = {name: create_key(home, ws, scopes, env)
            for name, (ws, scopes) in (KEY_SPECS if keys is None else keys).items()}
    log = tmp / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([RESOURCES, "serve", "--host", "127.0.0.1", "--port", str(port),
                                 *serve_args],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp,
                                start_new_session=True)
    server = Server(base, port, home, clock_file, proc.pid, proc, made, log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {server.stderr_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"server did not come up: {server.stderr_text()}")
        time.sleep(0.05)


def stop_server(server: Server) -> None:
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    # The server ran in its own session: a left-over child (the PDF worker) goes too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def internal_errors(server: Server) -> list[str]:
    return [line for line in server.stderr_text().splitlines() if "internal error" in line]


@pytest.fixture(scope="session")
def api_server(tmp_path_factory) -> Iterator[Server]:
    """One server for the read/write route tests (each test makes its own resources)."""
    server = start_server(tmp_path_factory.mktemp("api-server"))
    yield server
    stop_server(server)


def upload(client: httpx.Client, body: bytes, spec: dict | None = None, ws: str = "ws-acme",
           **headers: str) -> httpx.Response:
    h = {"X-Persist-Spec": json.dumps(spec or {})}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return client.post(f"/v1/{ws}/resources", content=body, headers=h)


# -- envelope checks (the CONTRACT's two shapes) ---------------------------------------------
def ok_body(r: httpx.Response, status: int = 200) -> dict:
    """The success envelope: exactly ``{"data", "meta"}``, meta an object."""
    assert r.status_code == status, f"{r.status_code} != {status}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"data", "meta"}, body
    assert isinstance(body["meta"], dict)
    return body


def error_body(r: httpx.Response, status: int, code: str | None = None) -> dict:
    """The failure envelope: exactly ``{"error": {"code", "message"[, "details"]}}``."""
    assert r.status_code == status, f"{r.status_code} != {status}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"code", "message"} <= set(err) <= {"code", "message", "details"}, err
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err
