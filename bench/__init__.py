"""Benchmarks of the resource service: `make bench` (full) and `make bench-quick`.

Entry point: ``python -m bench.run --quick|--full``. Each figure lives in its own module
(search_latency, ingest, streaming, index_growth, http_load); ``corpus`` makes the
deterministic documents, ``fts5_baseline`` the SQLite FTS5 comparison index, ``report``
writes bench/RESULTS.md. Data goes under bench/.data/ (gitignored) and big files are
removed after each figure.
"""
