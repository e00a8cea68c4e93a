"""`python -m bench.profile WHAT [--n N] [--home HOME]`: cProfile of one hot path.

WHAT: ``bulk`` (N persists in one ``service.batch()``), ``many`` (the same through
``service.persist_many``, one call per workspace), ``one`` (N one-by-one persists),
``search`` (every query shape of figure 1, N times, on an existing data home given with
``--home``, e.g. one kept with ``bench.run --keep-data``), ``stream`` (an N MiB
ephemeral persist). Prints the functions by own time and by cumulative time. For a
sampling view with C frames and waits, run the same under
``py-spy record --idle -f raw -o out.txt -- python -m bench.profile ...``.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

from .common import MiB, fresh_dir, open_service
from .corpus import MAIN_WS, bind_slots, documents


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile")
    ap.add_argument("what", choices=["bulk", "many", "one", "search", "stream"])
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--home", default=None)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--readonly", action="store_true",
                    help="search: skip recovery and index sync (home in use elsewhere)")
    ap.add_argument("--shape", default=None, help="search: only this shape key")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="bench-profile-")
    prof = cProfile.Profile()
    if args.what in ("bulk", "many", "one"):
        n = args.n or (300 if args.what == "one" else 3000)
        home = fresh_dir(Path(args.home) if args.home else Path(tmp.name) / "home")
        svc = open_service(home)
        bind_slots(svc)
        docs = list(documents(0, n, 16 * 1024))
        prof.enable()
        if args.what == "many":
            by_ws: dict[str, list] = {}
            for d in docs:
                by_ws.setdefault(d.workspace, []).append((d.spec, d.body))
            for ws, items in by_ws.items():
                svc.persist_many(ws, items)
        elif args.what == "bulk":
            with svc.batch():
                for d in docs:
                    svc.persist(d.workspace, d.spec, d.body)
        else:
            for d in docs:
                svc.persist(d.workspace, d.spec, d.body)
        prof.disable()
        svc.close()
    elif args.what == "search":
        from .search_latency import _inproc_cursor, shapes
        if not args.home:
            ap.error("search needs --home (a loaded data home)")
        if args.readonly:
            # Opening a service runs crash recovery (which removes staged files whose
            # writer released its lock) and an index sync: neither is safe on a home
            # another process is loading, so a read-only profile skips both.
            from indexer.index import SearchIndex
            from storage.lifecycle import Lifecycle
            Lifecycle.recover = lambda self: {}
            SearchIndex.try_sync = lambda self: None
        svc = open_service(Path(args.home))
        n = args.n or 50
        plan = [(s, _inproc_cursor(svc, s)) for s in shapes()
                if args.shape in (None, s.key)]
        for s, c in plan:
            svc.search(MAIN_WS, s.q, s.params, 20, c)
        prof.enable()
        for _ in range(n):
            for s, c in plan:
                svc.search(MAIN_WS, s.q, s.params, 20, c)
        prof.disable()
        svc.close()
    else:
        from .streaming import SPEC, WS, body
        n = (args.n or 256) * MiB
        home = fresh_dir(Path(args.home) if args.home else Path(tmp.name) / "home")
        svc = open_service(home)
        prof.enable()
        svc.persist(WS, SPEC, body(n))
        prof.disable()
        svc.close()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    tmp.cleanup()


if __name__ == "__main__":
    main()
