"""Benchmarks of the resource service: `make bench` (full) and `make bench-quick`.

Entry point: ``python -m bench.run --quick|--full``. Each figure lives in its own module
(search_latency, ingest, streaming, index_growth, http_load); ``corpus`` makes the
deterministic documents, ``fts5_baseline`` the SQLite FTS5 comparison index, ``report``
writes bench/RESULTS.md. Data goes under bench/.data/ (gitignored) and big files are
removed after each figure.

Measuring one size again after a code change, without reloading it (the 1M corpus takes
~40 minutes to load here):

    python -m bench.run --full --only search --sizes 1000000 --keep-data \
        --search-home /dev/shm/res1m --data /tmp/bench-data --results /tmp/r.md
    # ... change the code, then measure the same corpus again:
    python -m bench.run --full --only search --sizes 1000000 --keep-data \
        --search-home /dev/shm/res1m --data /tmp/bench-data --results /tmp/r.md --reuse-home

Figure 1 has the issue-18 yardstick (the bare words on the workspace's own partition);
figure 5 also loads `resources serve --workers 2`. Separate figures:
``python -m bench.tenancy`` (6), ``bench.semantic`` (7), ``bench.partitions`` (8),
``bench.write_path``, ``bench.scale_out``.
"""
