"""Runs one operation in a real process, for the crash tests (see test_crash_safety.py).

usage: crash_driver.py HOME ACKFILE OP [ARG]
Every acknowledged persist is appended to ACKFILE (fsynced) *after* the service returned
it, so the test knows exactly which writes were acknowledged before a SIGKILL.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_api.service import ResourceService  # noqa: E402
from storage.config import Settings  # noqa: E402

WS = "ws-crash"


def ack(ackfile: str, entry: dict) -> None:
    with open(ackfile, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def body(word: str) -> bytes:
    return (f"crash test document {word} " + "filler text " * 40000).encode()


def persist(svc: ResourceService, ackfile: str, word: str, spec: dict) -> None:
    data = body(word)

    def chunks():
        for i in range(0, len(data), 64 * 1024):
            yield data[i:i + 64 * 1024]
    res = svc.persist(WS, {"filename": f"{word}.txt", **spec}, chunks()).resource
    ack(ackfile, {"uri": res.uri, "sha256": hashlib.sha256(data).hexdigest(), "word": word})


def main() -> None:
    home, ackfile, op = sys.argv[1], sys.argv[2], sys.argv[3]
    arg = sys.argv[4] if len(sys.argv) > 4 else ""
    svc = ResourceService(Settings.from_env(home), log=lambda m: None)
    if op == "setup":
        svc.bind_slot(WS, "archive", "reports/acme")
        for i in range(3):
            persist(svc, ackfile, f"baseword{i}", {})
        persist(svc, ackfile, "slotword", {"slot": "archive", "path": "exports/2026"})
        for i in range(3):
            persist(svc, ackfile, f"expiring{i}", {"ttl-seconds": 10})
    elif op == "persist":
        persist(svc, ackfile, "newword", {})
    elif op == "durable":
        # What `serve` does: acknowledge once blob and record are durable, then let
        # the index follow (here: in the same thread, so the kill lands after the ack).
        svc.wait_default = False
        persist(svc, ackfile, "newword", {})
        persist(svc, ackfile, "otherword", {"slot": "archive", "path": "exports/2026",
                                            "filename": "slotword.txt"})
        svc.index.sync()
    elif op == "bulk":
        words = [f"bulkword{i}" for i in range(5)]
        results = svc.persist_many(WS, (({"filename": f"{w}.txt"}, body(w)) for w in words))
        for w, r in zip(words, results):
            ack(ackfile, {"uri": r.resource.uri, "word": w,
                          "sha256": hashlib.sha256(body(w)).hexdigest()})
    elif op == "rewrite":
        persist(svc, ackfile, "rewriteword", {"slot": "archive", "path": "exports/2026",
                                              "filename": "slotword.txt"})
    elif op == "delete":
        svc.delete(WS, arg)
    elif op == "gc":
        svc.gc()
    elif op == "overrides":
        svc.update_overrides(WS, arg, {"text": "overrideword"})
    svc.close()


if __name__ == "__main__":
    main()
