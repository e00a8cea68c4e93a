"""Streaming to an S3 slot vs the bare boto3 client, in the same run.

    python -m bench.s3_stream SIZE_MIB      # starts its own SeaweedFS

It also times 2 KB persists from 16 threads against bare boto3 PUTs.

Each side runs in a fresh process that streams SIZE bytes from a generator (no body in
memory) and reports seconds, MB/s and its peak RSS (VmHWM):
  - ``service``: a persist to a slot bound to an S3 connection (sha256, spool, conditional
    complete, catalog and index included);
  - ``bare``: boto3 multipart upload of the same bytes with the same part size and the same
    number of parts in flight, nothing else.
The test suite uses ``measure`` for its memory bound.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent

_COMMON = """
import json, os, sys, time
sys.path.insert(0, {repo!r})
MiB = 1 << 20
def body(total):
    block = os.urandom(MiB)          # incompressible, reused: flat memory
    sent = 0
    while sent < total:
        n = min(MiB, total - sent)
        yield block if n == MiB else block[:n]
        sent += n
def peak_mb(field="VmHWM:"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
"""

_SERVICE = _COMMON + """
from search_api.service import ResourceService
from storage.config import Settings
svc = ResourceService(Settings.from_env({home!r}), log=lambda m: None)
svc.bind_slot("ws-bench", "big", "bench", connection="s3")
start_mb = peak_mb("VmRSS:")         # what the process holds before the body: the baseline
t = time.perf_counter()
res = svc.persist("ws-bench", {{"slot": "big", "filename": "big.bin", "tier": "ephemeral"}},
                  body({size}))
secs = time.perf_counter() - t
print(json.dumps({{"seconds": secs, "size": res.resource.size, "peak_mb": peak_mb(),
                  "start_mb": start_mb}}))
"""

_BARE = _COMMON + """
import boto3
from botocore.config import Config
from concurrent.futures import ThreadPoolExecutor, FIRST_COMPLETED, wait
c = boto3.client("s3", endpoint_url={endpoint!r}, region_name="us-east-1",
                 config=Config(s3={{"addressing_style": "path"}}, max_pool_connections=32,
                               request_checksum_calculation="when_required"))
key = "bare/{name}"
t = time.perf_counter()
up = c.create_multipart_upload(Bucket={bucket!r}, Key=key)["UploadId"]
pool = ThreadPoolExecutor(8)
futs, buf, n = [], bytearray(), 0
def ship(data, n):
    return c.upload_part(Bucket={bucket!r}, Key=key, UploadId=up, PartNumber=n, Body=data)
for chunk in body({size}):
    buf += chunk
    if len(buf) >= {part}:
        live = [f for _, f in futs if not f.done()]
        while len(live) >= {inflight}:
            wait(live, return_when=FIRST_COMPLETED)
            live = [f for f in live if not f.done()]
        n += 1
        futs.append((n, pool.submit(ship, bytes(buf), n)))
        buf = bytearray()
if buf:
    n += 1
    futs.append((n, pool.submit(ship, bytes(buf), n)))
parts = [{{"PartNumber": i, "ETag": f.result()["ETag"]}} for i, f in futs]
c.complete_multipart_upload(Bucket={bucket!r}, Key=key, UploadId=up,
                            MultipartUpload={{"Parts": parts}})
secs = time.perf_counter() - t
c.delete_object(Bucket={bucket!r}, Key=key)
print(json.dumps({{"seconds": secs, "size": {size}, "peak_mb": peak_mb()}}))
"""


_SMALL_SERVICE = _COMMON + """
from concurrent.futures import ThreadPoolExecutor
from search_api.service import ResourceService
from storage.config import Settings
svc = ResourceService(Settings.from_env({home!r}), log=lambda m: None)
svc.bind_slot("ws-bench", "small", "small", connection={connection!r})
body = os.urandom(2048)
def one(i):
    svc.persist("ws-bench", {{"slot": "small", "path": f"c{{i % {clients}}}",
                              "filename": f"{{i}}.bin"}}, body)
t = time.perf_counter()
with ThreadPoolExecutor({clients}) as pool:
    list(pool.map(one, range({count})))
secs = time.perf_counter() - t
print(json.dumps({{"seconds": secs, "size": {count} * 2048, "per_s": {count} / secs,
                  "peak_mb": peak_mb()}}))
"""

_SMALL_BARE = _COMMON + """
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
c = boto3.client("s3", endpoint_url={endpoint!r}, region_name="us-east-1",
                 config=Config(s3={{"addressing_style": "path"}}, max_pool_connections=32,
                               request_checksum_calculation="when_required"))
body = os.urandom(2048)
def one(i):
    c.put_object(Bucket={bucket!r}, Key=f"small-bare/{name}/{{i}}.bin", Body=body)
t = time.perf_counter()
with ThreadPoolExecutor({clients}) as pool:
    list(pool.map(one, range({count})))
secs = time.perf_counter() - t
print(json.dumps({{"seconds": secs, "size": {count} * 2048, "per_s": {count} / secs,
                  "peak_mb": peak_mb()}}))
"""


def measure_small(home: Path, endpoint: str, bucket: str, env: dict, count: int = 800,
                  clients: int = 16) -> tuple[dict, dict, dict]:
    """(bare PUTs, service persists to S3, service persists to local disk) of 2 KB
    bodies from ``clients`` threads."""
    bare = _run(_SMALL_BARE.format(repo=str(REPO), endpoint=endpoint, bucket=bucket,
                                   count=count, clients=clients, name=uuid.uuid4().hex), env)
    svc = _run(_SMALL_SERVICE.format(repo=str(REPO), home=str(home), count=count,
                                     clients=clients, connection="s3"), env)
    local = _run(_SMALL_SERVICE.format(repo=str(REPO), home=str(home) + "-local",
                                       count=count, clients=clients,
                                       connection="platform"), env)
    return bare, svc, local


def _run(code: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace")[-3000:])
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    out["mb_per_s"] = out["size"] / MiB / out["seconds"]
    return out


def measure(home: Path, size: int, env: dict) -> dict:
    """One service persist of ``size`` bytes to the S3 connection configured for
    ``home`` (env carries credentials and the connection), in a fresh process."""
    return _run(_SERVICE.format(repo=str(REPO), home=str(home), size=size), env)


def measure_bare(endpoint: str, bucket: str, size: int, env: dict,
                 part: int = 8 * MiB, inflight: int = 4) -> dict:
    return _run(_BARE.format(repo=str(REPO), endpoint=endpoint, bucket=bucket, size=size,
                             part=part, inflight=inflight, name=uuid.uuid4().hex), env)


def main() -> None:
    import os
    import tempfile
    sys.path.insert(0, str(REPO / "tests"))
    from s3_server import start_seaweedfs
    size = int(sys.argv[1] if len(sys.argv) > 1 else 1024) * MiB
    server = start_seaweedfs()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, **server.env(),
                   "RESOURCES_CONNECTION_S3": server.connection_url("bench")}
            env.pop("RESOURCES_HOME", None)
            bare = measure_bare(server.endpoint, server.bucket, size, env)
            svc = measure(Path(tmp) / "home", size, env)
            print(f"S3 streaming {size // MiB} MiB to SeaweedFS (same run):")
            for name, r in (("bare boto3", bare), ("service persist", svc)):
                print(f"  {name:16} {r['mb_per_s']:7.1f} MB/s  peak RSS {r['peak_mb']:6.1f} MB")
            print(f"  ratio {svc['mb_per_s'] / bare['mb_per_s']:.0%} of bare client")
            sbare, ssvc, slocal = measure_small(Path(tmp) / "home2", server.endpoint, server.bucket,
                                        env)
            print("2 KB persists from 16 threads (same run):")
            print(f"  bare boto3 PUT   {sbare['per_s']:7.1f} /s")
            print(f"  service persist  {ssvc['per_s']:7.1f} /s   "
                  f"ratio {ssvc['per_s'] / sbare['per_s']:.0%}")
            print(f"  same to local    {slocal['per_s']:7.1f} /s   (the service's own ceiling)")
    finally:
        server.stop()


if __name__ == "__main__":
    t0 = time.time()
    main()
