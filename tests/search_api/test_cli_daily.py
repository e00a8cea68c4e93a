"""Issue 20: the CLI as a terminal user meets it. The real console script (subprocess)
against real data homes and a real server: where commands go, messages that say what to
do, tables that fit 80 columns, search as people type it, safe deletes, completion."""
from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import httpx
import pytest

from server import FIXTURES, RESOURCES, base_env, cli, start_server, stop_server

WS = "ws-acme"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("daily-server"))
    env = srv.env("admin", WS)
    cli("slots", "bind", "archive", "--root", "reports/acme", "--format", "json", env=env)
    for name, extra in (("report-multipage.pdf", ["--slot", "archive", "--path", "exports/2026"]),
                        ("notes.md", ["--workflow-id", "wf-1", "--step", "draft"]),
                        ("data.csv", ["--workflow-id", "wf-1", "--step", "export"])):
        cli("persist", str(FIXTURES / name), "--tag", "daily", *extra, "--format", "json", env=env)
    yield srv
    stop_server(srv)


@pytest.fixture
def local(tmp_path) -> dict:
    """An embedded environment on a fresh data home, with a few resources."""
    env = base_env(tmp_path / "home")
    env["RESOURCES_WORKSPACE"] = WS
    env["COLUMNS"] = "80"
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    for name in ("notes.md", "image.png", "report-multipage.pdf"):
        cli("persist", str(FIXTURES / name), "--workflow-id", "wf-9", "--step", "load",
            "--format", "json", env=env)
    return env


def run(*args: str, env: dict, cwd: Path | None = None, stdin: bytes | None = None):
    return cli(*args, env=env, check=False, cwd=cwd, stdin=stdin)


def error(proc) -> dict:
    return json.loads(proc.stderr)["error"]


def uris(proc) -> list[str]:
    return [i["uri"] for i in json.loads(proc.stdout)["data"]["items"]]


# -- where commands go ------------------------------------------------------------------
def test_url_without_key_is_an_error_and_never_runs_embedded(tmp_path):
    env = base_env(tmp_path / "unused")
    env.pop("RESOURCES_HOME")
    env["RESOURCES_API_URL"] = "http://127.0.0.1:9"
    p = run("list", "--format", "json", env=env, cwd=tmp_path)
    assert p.returncode == 2
    err = error(p)
    assert err["code"] == "config_error" and "RESOURCES_API_KEY" in err["message"]
    assert not (tmp_path / ".resources").exists() and p.stdout == b""
    env.pop("RESOURCES_API_URL")
    env["RESOURCES_API_KEY"] = "rk_x_y"
    p = run("list", "--format", "table", env=env, cwd=tmp_path)
    assert p.returncode == 2 and "RESOURCES_API_URL" in p.stderr.decode()


def test_remote_workspace_defaults_to_the_keys_own(server, tmp_path):
    env = server.env("admin", WS)
    env.pop("RESOURCES_WORKSPACE")
    p = run("list", "--format", "json", env=env, cwd=tmp_path)
    assert p.returncode == 0 and len(uris(p)) == 3
    status = json.loads(run("status", "--format", "json", env=env, cwd=tmp_path).stdout)["data"]
    assert status["mode"] == "remote" and status["workspace"] == WS
    assert status["scopes"] and status["key-id"] and status["index-backlog"] == 0
    assert status["workspace-from"] == "the key's own workspace"


def test_embedded_home_is_never_created_in_the_current_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCES_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    p = run("list", "--format", "json", env=env, cwd=cwd)
    assert p.returncode == 0
    assert "creating the data home" in p.stderr.decode()
    assert not (cwd / ".resources").exists()
    assert (tmp_path / "data" / "resources" / "catalog.db").exists()
    status = json.loads(run("status", "--format", "json", env=env, cwd=cwd).stdout)["data"]
    assert status["home"] == str(tmp_path / "data" / "resources")
    assert status["mode"] == "embedded" and status["workspace"] == "default"


def test_profiles_in_the_config_file(server, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[staging]\nurl = "{server.base}"\nkey = "{server.keys["admin"]}"\n')
    env = base_env(tmp_path / "home")
    env["RESOURCES_CONFIG"] = str(config)
    p = run("--profile", "staging", "status", "--format", "json", env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)["data"]
    assert data["mode"] == "remote" and data["workspace"] == WS and data["profile"] == "staging"
    assert data["config-file"] == str(config)
    p = run("--profile", "nope", "status", "--format", "json", env=env, cwd=tmp_path)
    assert p.returncode == 2 and "staging" in error(p)["message"]


# -- messages that say what to do -------------------------------------------------------
def test_precise_not_found_messages(local):
    rec = json.loads(run("list", "--format", "json", env=local).stdout)["data"]["items"][0]
    other = rec["uri"].replace(f"/ws/{WS}/", "/ws/ws-other/")
    err = error(run("get", other, "--format", "json", env=local))
    assert err["code"] == "wrong_workspace" and "RESOURCES_WORKSPACE=ws-other" in err["message"]
    err = error(run("get", rec["id"], "--format", "json", env=local))
    assert err["code"] == "invalid_uri" and f"did you mean {rec['uri']}?" in err["message"]
    err = error(run("read", rec["webUrl"], "--format", "json", env=local))
    assert err["code"] == "invalid_uri" and rec["uri"] in err["message"]
    err = error(run("delete", "report.pdf", "--format", "json", env=local))
    assert err["code"] == "invalid_uri" and "res://v1/ws/<workspace>" in err["message"]
    err = error(run("kv", "get", "no-such-key", "--format", "json", env=local))
    assert err["code"] == "kv_key_not_found" and "'no-such-key'" in err["message"]
    missing = rec["uri"][:-1] + ("0" if rec["uri"][-1] != "0" else "1")
    assert error(run("get", missing, "--format", "json", env=local))["code"] == "not_found"


def test_unknown_field_in_a_query_names_it(local):
    p = run("search", "nosuchfield:foo", "--format", "table", env=local)
    assert p.returncode == 1
    line = p.stderr.decode()
    assert "unknown field 'nosuchfield'" in line and "storage-root" in line


def test_unknown_http_query_parameters_are_a_400_naming_them(server):
    with server.client("admin") as c:
        for path in ("/v1/ws-acme/resources", "/v1/ws-acme/resources/search"):
            r = c.get(path, params={"storage_root": "x", "q": "a"} if "search" in path
                      else {"storage_root": "x"})
            assert r.status_code == 400
            err = r.json()["error"]
            assert err["code"] == "unknown_parameter" and "storage_root" in err["message"]
        r = c.get("/v1/ws-acme/workflows/wf-1/resources", params={"tier": "retained"})
        assert r.status_code == 400 and "tier" in r.json()["error"]["message"]
        # the documented parameters still work
        assert c.get("/v1/ws-acme/resources", params={"storage-root": "reports/acme",
                                                       "limit": 5}).status_code == 200


def test_usage_errors_exit_2(local):
    for args in (["list", "--limit", "500"], ["list", "--tier", "bogus"],
                 ["search", "x", "--type", "file,nope"], ["url", "res://x", "--ttl", "5"]):
        p = run(*args, env=local)
        assert p.returncode == 2, (args, p.stderr)


# -- tables for a terminal --------------------------------------------------------------
def test_every_table_line_fits_80_columns(local):
    big = json.dumps({"blob": "x" * 200_000})
    run("kv", "set", "big", "-", "--format", "json", env=local, stdin=big.encode())
    rec = json.loads(run("list", "--format", "json", env=local).stdout)["data"]["items"][0]
    outputs = {}
    for args in (["list"], ["search", "revenue"], ["kv", "list"], ["kv", "get", "big"],
                 ["get", rec["uri"]], ["status"], ["workflow", "list", "wf-9"], ["slots", "list"],
                 ["workflow", "delete", "wf-none", "--dry-run"], ["gc", "--dry-run"]):
        p = run(*args, "--format", "table", env=local)
        assert p.returncode == 0, (args, p.stderr)
        text = p.stdout.decode()
        outputs[args[0] + " " + args[1] if len(args) > 1 else args[0]] = text
        assert all(len(line) <= 80 for line in text.splitlines()), (args, text)
    assert len(outputs["kv list"]) < 2000 and "…" in outputs["kv list"]
    assert "--format json" in outputs["kv get"]
    listing = outputs["list"]
    assert listing.splitlines()[0].split() == ["NAME", "TYPE", "SIZE", "TIER", "STEP", "AGE"]
    assert "KiB" in listing and "load" in listing and "True" not in listing
    search = outputs["search revenue"]
    assert "«revenue»" in search or "«Revenue»" in search          # the snippet line
    record = run("get", rec["uri"], "--format", "table", env=local).stdout.decode()
    assert "yes" in record or "no" in record
    assert "True" not in record and "False" not in record


# -- search as people type it -----------------------------------------------------------
def test_search_words_without_quotes(local):
    p = run("search", "revenue", "OR", "markdownheron", "--format", "json", env=local)
    assert p.returncode == 0, p.stderr
    names = {i["filename"] for i in json.loads(p.stdout)["data"]["items"]}
    assert names == {"report-multipage.pdf", "notes.md"}
    both = run("search", "revenue", "markdownheron", "--format", "json", env=local)
    assert uris(both) == []                                      # all words (the default)
    anyword = run("search", "revenue", "markdownheron", "--keyword-mode", "any",
                  "--format", "json", env=local)
    assert len(uris(anyword)) == 2


# -- safe destructive commands ----------------------------------------------------------
def test_delete_prints_one_line_and_workflow_delete_previews(local):
    preview = run("workflow", "delete", "wf-9", "--dry-run", "--format", "json", env=local)
    data = json.loads(preview.stdout)
    assert len(data["data"]["would-delete"]) == 3 and data["meta"]["dry-run"] is True
    assert len(uris(run("list", "--format", "json", env=local))) == 3      # nothing went
    table = run("workflow", "delete", "wf-9", "--dry-run", "--format", "table", env=local)
    assert table.stdout.decode().startswith("would delete 3 resource(s)")
    first = uris(run("list", "--format", "json", env=local))[0]
    p = run("delete", first, "--format", "table", env=local)
    lines = p.stdout.decode().splitlines()
    assert p.returncode == 0 and len(lines) == 1 and lines[0].startswith(f"deleted {first} (")
    done = run("workflow", "delete", "wf-9", "--yes", "--format", "json", env=local)
    assert len(json.loads(done.stdout)["data"]["deleted"]) == 2


def test_binary_content_is_not_written_to_a_terminal(local, tmp_path):
    items = json.loads(run("list", "--format", "json", env=local).stdout)["data"]["items"]
    png = next(i for i in items if i["filename"] == "image.png")
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([str(RESOURCES), "read", png["uri"]], env=local, stdout=slave,
                              stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 1 and b"-o FILE" in proc.stderr
    out = tmp_path / "copy.png"
    assert run("read", png["uri"], "-o", str(out), env=local).returncode == 0
    assert out.read_bytes() == (FIXTURES / "image.png").read_bytes()


# -- completion and help ----------------------------------------------------------------
def test_completion_scripts_and_values(local):
    for shell in ("bash", "zsh", "fish"):
        p = run("completion", shell, env=local)
        assert p.returncode == 0 and "_RESOURCES_COMPLETE" in p.stdout.decode(), shell
    cli("slots", "bind", "archive", "--root", "reports/acme", "--format", "json", env=local)

    def complete(words: str) -> list[str]:
        env = dict(local, _RESOURCES_COMPLETE="bash_complete", COMP_WORDS=words,
                   COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)))
        p = subprocess.run([str(RESOURCES)], env=env, capture_output=True, timeout=60)
        return [line.split(",", 1)[1] for line in p.stdout.decode().splitlines() if line]
    assert complete("resources list --tier ") == ["retained", "ephemeral"]
    assert complete("resources search x --type fi") == ["file"]
    assert complete("resources list --slot ar") == ["archive"]
    assert "search-index" in complete("resources sea")


def test_api_docs_page_is_served_without_remote_assets(server):
    r = httpx.get(f"{server.base}/docs", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "/v1/{ws}/resources/search" in page and "keyword-mode" in page
    assert "<script" not in page and "src=\"http" not in page and "cdn" not in page.lower()


# -- sort, time and size filters (CLI and HTTP) -----------------------------------------
def test_sort_since_until_and_size_filters(local, server):
    def names(*args: str) -> list[str]:
        p = run("list", *args, "--format", "json", env=local)
        assert p.returncode == 0, p.stderr
        return [i["filename"] for i in json.loads(p.stdout)["data"]["items"]]
    assert names("--sort", "size") == ["report-multipage.pdf", "image.png", "notes.md"]
    assert names("--sort", "name") == ["image.png", "notes.md", "report-multipage.pdf"]
    assert names("--sort", "oldest")[0] == "notes.md"
    assert names("--min-size", "1KiB") == ["report-multipage.pdf"]
    assert names("--max-size", "300", "--sort", "name") == ["notes.md"]
    assert len(names("--since", "1h")) == 3 and names("--until", "1h") == []
    assert len(names("--since", "2020-01-01T00:00:00Z")) == 3
    p = run("search", "revenue", "OR", "markdownheron", "--sort", "name", "--format", "json",
            env=local)
    assert [i["filename"] for i in json.loads(p.stdout)["data"]["items"]] == \
        ["notes.md", "report-multipage.pdf"]
    p = run("list", "--since", "yesterday", "--format", "json", env=local)
    assert p.returncode == 1 and "7d" in error(p)["message"]
    assert run("list", "--sort", "bogus", env=local).returncode == 2
    with server.client("admin") as c:
        r = c.get("/v1/ws-acme/resources", params={"sort": "size", "min-size": "1KiB",
                                                   "since": "1d"})
        assert r.status_code == 200
        assert [i["filename"] for i in r.json()["data"]["items"]] == ["report-multipage.pdf"]
        r = c.get("/v1/ws-acme/resources/search", params={"q": "daily", "sort": "oldest"})
        assert [i["filename"] for i in r.json()["data"]["items"]][0] == "report-multipage.pdf"


def test_make_run_refuses_a_busy_port_before_minting_a_key(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = base_env(tmp_path / "home")
        p = subprocess.run([str(Path(RESOURCES).parent / "python"), "-m", "search_api.demo",
                            "--port", str(port)], env=env, capture_output=True, timeout=60)
        assert p.returncode == 2
        assert b"already in use" in p.stderr and b"make run PORT=" in p.stderr
        assert b"rk_" not in p.stdout + p.stderr and not (tmp_path / "home").exists()
        p = run("serve", "--port", str(port), env=env)
        assert p.returncode == 2 and b"--port" in p.stderr


def test_progress_bar_for_a_big_persist_on_a_terminal_only(local, tmp_path):
    import threading
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * 1024 * 1024))
    master, slave = pty.openpty()
    seen = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)
    reader = threading.Thread(target=drain)
    reader.start()
    try:
        p = subprocess.run([str(RESOURCES), "persist", str(big), "--tier", "ephemeral",
                            "--format", "table"], env=local, stdout=subprocess.PIPE,
                           stderr=slave, timeout=120)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    assert p.returncode == 0
    assert b"persist" in seen and b"100%" in seen
    quiet = run("persist", str(big), "--tier", "ephemeral", "--format", "json", env=local)
    assert quiet.returncode == 0 and quiet.stderr == b""
