"""A real PostgreSQL for the tests: Debian's package (``apt-get install postgresql``,
which .ci/sysdeps.sh installs when it is missing), started once per test session.

initdb refuses to run as root, so as root the server runs as the ``postgres`` user (via
runuser) in a temp dir that user owns. It listens on loopback on a random port below the
ephemeral range (32768+), with fsync off (tests never survive a power cut) and
asynchronous commits unless asked for ``durable`` (a test that crashes the server), and is
stopped at the end of the session. Each test gets a schema of its own in one database
(the URL sets ``search_path``), migrated on first open: on 2 busy cores that measured
~0.2 s, where ``CREATE DATABASE ... TEMPLATE`` of a migrated database took 0.3-0.8 s.
"""
from __future__ import annotations

import glob
import itertools
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def pg_bin() -> Path:
    """The newest installed server's bin dir (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        pytest.fail("PostgreSQL is missing: run .ci/sysdeps.sh (apt-get install postgresql)")
    return Path(found[-1]).parent


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@dataclass
class PgServer:
    dir: Path
    port: int
    bin: Path
    #: synchronous_commit on: an acknowledged commit survives a crash of the server
    #: (off, the default here, loses the last ~0.6 s of commits to `pg_ctl -m immediate`).
    durable: bool = False

    _names = itertools.count()

    def url(self, database: str = "postgres", schema: str | None = None) -> str:
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        return url + (f"?options=-csearch_path%3D{schema}" if schema else "")

    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(args[:1])} failed: {done.stderr or done.stdout}")
        return done

    def start(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
            str(self.dir / "log"), "-w", "-t", "60", "-o",
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.dir} -c fsync=off "
            f"-c synchronous_commit={'on' if self.durable else 'off'} "
            f"-c full_page_writes=off -c max_connections=400",
            "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"),
                          "-m", mode, "-w", "stop", check=False)

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)

    def new_database(self) -> str:
        """A fresh, empty catalog's URL (a new schema; the catalog migrates it)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE SCHEMA {name}", "tests")
        return self.url("tests", name)


def start_pg(root: Path, durable: bool = False) -> PgServer:
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o700)
    server = PgServer(root, 0, pg_bin(), durable)
    server._as_postgres(str(server.bin / "initdb"), "-D", str(root / "data"), "-U",
                        "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync",
                        "--no-instructions")
    for _ in range(50):
        port = random.randint(15000, 30000)
        if _free(port):
            server.port = port
            try:
                server.start()
                break
            except RuntimeError:
                continue          # the port was taken between the check and the start
    else:
        raise RuntimeError(f"PostgreSQL did not start: {(root / 'log').read_text()[-2000:]}")
    server.sql("CREATE DATABASE tests")
    return server


@pytest.fixture(scope="session")
def postgres():
    root = Path(tempfile.mkdtemp(prefix="resources-pg-"))
    root.chmod(0o711)     # mkdtemp's 0700 would keep the postgres user out of its own dir
    server = start_pg(root / "pg")
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres) -> str:
    """A fresh, empty catalog database (a schema) for one test."""
    return postgres.new_database()


def wait_until(predicate, timeout: float = 10.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)
