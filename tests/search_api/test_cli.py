"""CONTRACT CLI `resources`: the real console script, embedded on $RESOURCES_HOME and
$RESOURCES_WORKSPACE; JSON output is the API envelope (so the jq recipes work); errors go
to stderr with exit 1 (user error) or 2 (usage)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import click
import pytest

from search_api.cli import main as cli_main

RESOURCES = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "resources"
WS = "ws-acme"


class Cli:
    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("RESOURCES_API_URL", "RESOURCES_API_KEY")
                    and not k.startswith("RESOURCES_")}
        self.env.update(RESOURCES_HOME=str(home), RESOURCES_WORKSPACE=WS)

    def run(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(RESOURCES), *args], env=self.env, cwd=self.cwd, input=input,
                              capture_output=True, timeout=60)

    def json(self, *args: str, input: bytes | None = None) -> dict:
        proc = self.run(*args, "--format", "json", input=input)
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr.decode())
        return json.loads(proc.stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home", tmp_path)


def jq_search_uris(env: dict) -> list[str]:
    """jq -r '.data.items[].uri'"""
    return [item["uri"] for item in env["data"]["items"]]


def jq_web_url(env: dict) -> str:
    """jq -r '.meta.webUrl // .data.webUrl // empty'"""
    return (env.get("meta") or {}).get("webUrl") or (env.get("data") or {}).get("webUrl") or ""


def test_persist_get_read_list_delete(cli, fixtures_dir, tmp_path):
    src = fixtures_dir / "report-multipage.pdf"
    data = src.read_bytes()
    env = cli.json("persist", str(src), "--tag", "quarterly", "--flow", "billing",
                   "--step", "export", "--workflow-id", "run-1")
    rec = env["data"]
    assert rec["uri"] == f"res://v1/ws/{WS}/file/{rec['id']}"
    assert rec["workspace"] == WS
    assert rec["filename"] == "report-multipage.pdf"
    assert rec["content-type"] == "application/pdf"
    assert rec["size"] == len(data) and rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["tags"] == ["quarterly"]
    assert env["meta"]["webUrl"] == rec["webUrl"]
    # the blob sits at its CONTRACT path under $RESOURCES_HOME
    assert (cli.home / rec["path"]).read_bytes() == data
    assert rec["path"].startswith(f"workspaces/{WS}/persist/billing/export/")

    got = cli.json("get", rec["uri"])
    assert got["data"] == rec
    assert jq_web_url(got) == rec["webUrl"] and jq_web_url(got).startswith("http")

    out = tmp_path / "copy.pdf"
    proc = cli.run("read", rec["uri"], "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.read_bytes() == data
    assert not Path(f"{out}.part").exists()
    proc = cli.run("read", rec["uri"])
    assert proc.returncode == 0 and proc.stdout == data

    listed = cli.json("list")
    assert jq_search_uris(listed) == [rec["uri"]]
    assert listed["meta"]["total"] == 1

    found = cli.json("search", "zephyrquasar")
    assert jq_search_uris(found) == [rec["uri"]]
    assert "score" in found["data"]["items"][0] and "snippet" in found["data"]["items"][0]

    deleted = cli.json("delete", rec["uri"])
    assert deleted["data"]["uri"] == rec["uri"]
    assert not (cli.home / rec["path"]).exists()
    assert cli.json("list")["data"]["items"] == []
    assert cli.json("search", "zephyrquasar")["data"]["items"] == []

    proc = cli.run("get", rec["uri"], "--format", "json")
    assert proc.returncode == 1
    assert json.loads(proc.stderr)["error"]["code"] == "not_found"


def test_persist_from_stdin_and_kv(cli):
    env = cli.json("persist", "-", "--filename", "piped.txt", input=b"piped words\n")
    assert env["data"]["filename"] == "piped.txt" and env["data"]["size"] == 12
    kv = cli.json("persist", "-", "--type", "kv", input=b'{"answer": 42}')
    assert kv["data"]["type"] == "result"
    assert kv["data"]["content-type"] == "application/json"
    proc = cli.run("persist", "-", "--type", "kv", "--format", "json", input=b"{nope")
    assert proc.returncode == 1
    assert json.loads(proc.stderr)["error"]["code"] == "invalid_spec"


def test_slots_bind_list_and_slot_persist(cli, fixtures_dir):
    bound = cli.json("slots", "bind", "archive", "--root", "reports/acme")
    assert bound["data"]["slot"] == "archive" and bound["data"]["root"] == "reports/acme"
    assert bound["data"]["connection"] == "platform"
    listed = cli.json("slots", "list")
    assert [(s["slot"], s["root"]) for s in listed["data"]["items"]] == [("archive", "reports/acme")]

    env = cli.json("persist", str(fixtures_dir / "data.csv"), "--slot", "archive",
                   "--path", "exports/{{input.year}}", "--param", "input.year=2026")
    rec = env["data"]
    assert rec["path"] == f"workspaces/{WS}/storage/reports/acme/exports/2026/data.csv"
    assert rec["storage-root"] == "reports/acme"
    assert rec["path-under-root"] == "exports/2026/data.csv"
    assert (cli.home / rec["path"]).read_bytes() == (fixtures_dir / "data.csv").read_bytes()

    again = cli.json("persist", str(fixtures_dir / "notes.md"), "--slot", "archive",
                     "--path", "exports/2026", "--filename", "data.csv")
    assert again["data"]["uri"] == rec["uri"] and again["data"]["version"] == 2
    assert (cli.home / rec["path"]).read_bytes() == (fixtures_dir / "notes.md").read_bytes()

    near = cli.json("persist", str(fixtures_dir / "data.csv"), "--slot", "archive",
                    "--path", "exports/20261")
    only = cli.json("list", "--path-prefix", "exports/2026")
    assert jq_search_uris(only) == [rec["uri"]]
    assert near["data"]["uri"] not in jq_search_uris(only)
    assert set(jq_search_uris(cli.json("list", "--slot", "archive"))) == \
        {rec["uri"], near["data"]["uri"]}


def test_workflow_list_and_step(cli, fixtures_dir):
    a = cli.json("persist", str(fixtures_dir / "notes.md"), "--workflow-id", "run-7",
                 "--flow", "f", "--step", "extract")["data"]
    b = cli.json("persist", str(fixtures_dir / "data.csv"), "--workflow-id", "run-7",
                 "--flow", "f", "--step", "load")["data"]
    cli.json("persist", str(fixtures_dir / "config.yaml"), "--workflow-id", "run-8")
    run = cli.json("workflow", "list", "run-7")
    assert jq_search_uris(run) == [b["uri"], a["uri"]]
    assert run["meta"]["total"] == 2
    step = cli.json("workflow", "step", "run-7", "extract")
    assert jq_search_uris(step) == [a["uri"]]


def test_idempotency_key_replays(cli, fixtures_dir):
    src = str(fixtures_dir / "notes.md")
    first = cli.json("persist", src, "--idempotency-key", "k1")
    again = cli.json("persist", src, "--idempotency-key", "k1")
    assert again["data"]["uri"] == first["data"]["uri"]
    assert again["meta"]["replayed"] is True
    proc = cli.run("persist", str(fixtures_dir / "data.csv"), "--filename", "notes.md",
                   "--idempotency-key", "k1", "--format", "json")
    assert proc.returncode == 1
    assert json.loads(proc.stderr)["error"]["code"] == "idempotency_conflict"


def test_bad_path_json_error_on_a_fresh_home(cli, fixtures_dir):
    """The very first command on a new data home: stderr holds only the error JSON."""
    proc = cli.run("persist", str(fixtures_dir / "notes.md"), "--path", "../x", "--format", "json")
    assert proc.returncode == 1
    assert proc.stdout == b""
    err = json.loads(proc.stderr)
    assert set(err) == {"error"}
    assert err["error"]["code"] == "invalid_path"
    assert "'..'" in err["error"]["message"] and "path" in err["error"]["message"]
    assert not (cli.home / "workspaces").exists()


def test_bad_path_table_error_is_one_line(cli, fixtures_dir):
    cli.json("list")      # the home exists already
    proc = cli.run("persist", str(fixtures_dir / "notes.md"), "--path", "a//b", "--format", "table")
    assert proc.returncode == 1
    assert proc.stdout == b""
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "empty segment" in lines[0]


@pytest.mark.parametrize("args", [
    ["persist", "--bogus", "x"],
    ["list", "--no-such-flag"],
    ["persist"],
    ["no-such-command"],
    ["persist", "x", "--tier", "forever"],
    ["slots", "bind", "archive"],
])
def test_usage_errors_exit_2(cli, args):
    proc = cli.run(*args)
    assert proc.returncode == 2, (args, proc.stderr.decode())
    assert proc.stdout == b""
    assert proc.stderr


def test_table_output_for_people(cli, fixtures_dir):
    rec = cli.json("persist", str(fixtures_dir / "image.png"))["data"]
    proc = cli.run("list", "--format", "table")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    # Issue 20: names first, human sizes; the uri on its own line to copy.
    assert text.splitlines()[0].split() == ["NAME", "TYPE", "SIZE", "TIER", "STEP", "AGE"]
    assert "image.png" in text and " B " in text or "KiB" in text
    assert f"  {rec['uri']}" in text.splitlines()
    assert "1 of 1" in text


def test_accept_filter_from_the_cli(cli, fixtures_dir):
    img = cli.json("persist", str(fixtures_dir / "image.png"))["data"]
    cli.json("persist", str(fixtures_dir / "notes.md"))
    assert jq_search_uris(cli.json("list", "--accept", "image/*")) == [img["uri"]]


def test_paging_from_the_cli(cli, fixtures_dir):
    made = [cli.json("persist", "-", "--filename", f"p{i}.txt", input=f"{i}".encode())["data"]["uri"]
            for i in range(3)]
    first = cli.json("list", "--limit", "2")
    assert first["meta"]["next-cursor"]
    second = cli.json("list", "--limit", "2", "--cursor", first["meta"]["next-cursor"])
    assert jq_search_uris(first) + jq_search_uris(second) == list(reversed(made))


def _walk(group: click.Group, prefix: str = ""):
    for name, cmd in sorted(group.commands.items()):
        yield f"{prefix}{name}", cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, f"{prefix}{name} ")


def test_every_command_and_subcommand_has_help_text():
    assert (cli_main.help or "").strip()
    commands = list(_walk(cli_main))
    names = {name for name, _ in commands}
    assert {"persist", "get", "read", "list", "search", "delete", "workflow list",
            "workflow step", "slots bind", "slots list"} <= names
    missing = [name for name, cmd in commands if not (cmd.help or cmd.short_help or "").strip()]
    assert missing == []


def test_help_runs_for_every_command(cli):
    proc = cli.run("--help")
    assert proc.returncode == 0 and b"persist" in proc.stdout
    for sub in (["persist"], ["slots", "bind"], ["workflow", "step"]):
        proc = cli.run(*sub, "--help")
        assert proc.returncode == 0 and b"Usage:" in proc.stdout
