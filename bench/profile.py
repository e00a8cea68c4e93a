"""`python -m bench.profile WHAT [--n N] [--home HOME]`: cProfile of one hot path.

WHAT: ``bulk`` (N persists in one ``service.batch()``), ``one`` (N one-by-one persists),
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
    ap.add_argument("what", choices=["bulk", "one", "search", "stream"])
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--home", default=None)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="bench-profile-")
    prof = cProfile.Profile()
    if args.what in ("bulk", "one"):
        n = args.n or (3000 if args.what == "bulk" else 300)
        home = fresh_dir(Path(args.home) if args.home else Path(tmp.name) / "home")
        svc = open_service(home)
        bind_slots(svc)
        docs = list(documents(0, n, 16 * 1024))
        prof.enable()
        if args.what == "bulk":
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
        svc = open_service(Path(args.home))
        n = args.n or 50
        plan = [(s, _inproc_cursor(svc, s)) for s in shapes()]
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
