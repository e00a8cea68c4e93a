"""Issue 20: the README's walkthrough, run verbatim against `make run`'s demo server.

Every ```console block under "## Walkthrough" is a list of `$ command` lines, each
followed by what it prints. The test starts the demo exactly as `make run` does (on a
free port, a fresh data home), sets the exports it prints, runs each command in bash at
80 columns and compares the output with the README once volatile parts (ids, ages,
times, the key id, the port) are masked.

To refresh the README after a deliberate change:
``python tests/search_api/test_readme_walkthrough.py`` prints the blocks with today's output.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from server import ROOT, free_port  # noqa: E402

README = ROOT / "README.md"
VENV_BIN = ROOT / ".venv" / "bin"
DEFAULT_BASE = "http://127.0.0.1:8080"

MASKS = [
    (re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b"), "<ID>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<TIME>"),
    (re.compile(r"(?m)(?<=  )\d+[smhd]$"), "<AGE>"),
    (re.compile(r"(?m)^(key-id\s+)[0-9a-f]{12}$"), r"\1<KEY-ID>"),
    (re.compile(r"--cursor \S+"), "--cursor <CURSOR>"),
]


def mask(text: str) -> str:
    for pattern, repl in MASKS:
        text = pattern.sub(repl, text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def walkthrough(readme: str) -> list[tuple[str, str]]:
    """(command, expected output) of every `$ ` line of the Walkthrough section."""
    section = readme.split("\n## Walkthrough", 1)[1].split("\n## ", 1)[0]
    steps: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        command, out = None, []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command is not None:
                    steps.append((command, "\n".join(out)))
                command, out = line[2:], []
            else:
                out.append(line)
        if command is not None:
            steps.append((command, "\n".join(out)))
    return steps


def start_demo(tmp: Path) -> tuple[subprocess.Popen, str, str]:
    """`make run`'s own command on a fresh home; returns (process, base url, key)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCES_")}
    # Links (webUrl) read as on `make run`'s default port, so cut columns match the README.
    env.update(RESOURCES_HOME=str(tmp / "home"), PYTHONUNBUFFERED="1",
               RESOURCES_PUBLIC_URL=DEFAULT_BASE)
    log = tmp / "demo.log"
    proc = subprocess.Popen([str(VENV_BIN / "python"), "-m", "search_api.demo", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        text = log.read_text(errors="replace")
        key = re.search(r"export RESOURCES_API_KEY=(rk_\S+)", text)
        if key:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return proc, base, key.group(1)
            except httpx.TransportError:
                pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"demo did not start: {text}")
        time.sleep(0.1)


def run_steps(steps: list[tuple[str, str]], base: str, key: str, cwd: Path):
    """Run each command in bash with the exports `make run` prints; `VAR=$(...)` lines
    set VAR for the commands after them, as they would in one shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCES_")}
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", RESOURCES_API_URL=base,
               RESOURCES_API_KEY=key, RESOURCES_WORKSPACE="ws-acme",
               RESOURCES_FORMAT="table", COLUMNS="80", XDG_CONFIG_HOME=str(cwd / "config"))
    for command, expected in steps:
        assign = re.fullmatch(r"(\w+)=\$\((.*)\)", command)
        proc = subprocess.run(["bash", "-c", assign.group(2) if assign else command], env=env,
                              cwd=cwd, capture_output=True, timeout=60)
        if assign:
            env[assign.group(1)] = proc.stdout.decode().strip()
        out = (proc.stdout + proc.stderr).decode().replace(base, DEFAULT_BASE)
        yield command, expected, ("" if assign else out), proc.returncode


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("walkthrough")
    proc, base, key = start_demo(tmp)
    yield tmp, base, key
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def test_readme_walkthrough_prints_what_the_readme_shows(demo):
    tmp, base, key = demo
    steps = walkthrough(README.read_text())
    assert len(steps) >= 6
    cwd = tmp / "cwd"
    cwd.mkdir()
    for command, expected, actual, code in run_steps(steps, base, key, cwd):
        assert mask(actual) == mask(expected), f"$ {command}\n--- got ---\n{actual}"
        # Tables fit; an error stays one line (the terminal wraps it).
        assert all(len(line) <= 80 for line in actual.splitlines()
                   if not line.startswith("error: ")), command
        if "error" not in expected:
            assert code == 0, (command, actual)


def test_readme_links_nothing_outside_the_repo():
    text = README.read_text()
    assert "../shared" not in text and "CONTRACT" not in text
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link


if __name__ == "__main__":      # print the blocks with today's output (for the README)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, base, key = start_demo(tmp)
        (tmp / "cwd").mkdir()
        try:
            for command, _, actual, _ in run_steps(walkthrough(README.read_text()), base, key,
                                                   tmp / "cwd"):
                print(f"$ {command}\n{actual.rstrip()}" if actual.strip() else f"$ {command}")
        finally:
            proc.terminate()
