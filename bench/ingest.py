"""Figure 2: ingest rate, resources persisted and indexed per second.

* one by one: ``service.persist`` per document, each followed by its index commit (the
  default path of a single persist);
* bulk: the same documents inside one ``with service.batch():`` (one index commit at
  the end; the time includes it);
* persist_many (when the service has it): the service's bulk API, one call per
  workspace (grouped durability barrier, transactions and index commit);
* baseline: raw tantivy on the same documents in the same process: the records and
  texts the bulk run stored, turned into documents with the service's own schema and
  ``make_document``, ``add_document`` each, one ``commit()`` (+ waiting for merges).

Documents are the corpus's first ``n`` in the small profile (bodies capped at 16 KiB),
generated before the clock starts. The one-by-one home is kept for figure 4.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .common import fresh_dir, log, open_service
from .corpus import bind_slots, documents

SMALL_MAX_BYTES = 16 * 1024


def _persist_all(home: Path, docs: list, bulk: bool) -> float:
    svc = open_service(home)
    try:
        bind_slots(svc)
        svc.index.try_sync()
        t0 = time.perf_counter()
        if bulk:
            with svc.batch():
                for d in docs:
                    svc.persist(d.workspace, d.spec, d.body)
        else:
            for d in docs:
                svc.persist(d.workspace, d.spec, d.body)
        seconds = time.perf_counter() - t0
        assert svc.index.count() == len(docs), (svc.index.count(), len(docs))
        return seconds
    finally:
        svc.close()


def _persist_many(home: Path, docs: list) -> float | None:
    """The service's bulk API, ``persist_many`` (one call per workspace), when present."""
    svc = open_service(home)
    try:
        if not hasattr(svc, "persist_many"):
            return None
        bind_slots(svc)
        by_ws: dict[str, list] = {}
        for d in docs:
            by_ws.setdefault(d.workspace, []).append((d.spec, d.body))
        t0 = time.perf_counter()
        for ws, items in by_ws.items():
            svc.persist_many(ws, items)
        seconds = time.perf_counter() - t0
        assert svc.index.count() == len(docs), (svc.index.count(), len(docs))
        return seconds
    finally:
        svc.close()


def raw_tantivy(source_home: Path, target: Path) -> dict[str, Any]:
    import tantivy

    from indexer.index import WRITER_HEAP
    from indexer.schema import build_schema, make_document

    svc = open_service(source_home)
    try:
        records = list(svc.catalog.resources.all())
        texts = svc.catalog.resources.extract_texts([r.id for r in records])
    finally:
        svc.close()
    fresh_dir(target)
    t0 = time.perf_counter()
    index = tantivy.Index(build_schema(), str(target))
    writer = index.writer(WRITER_HEAP, 1)
    for res in records:
        writer.add_document(make_document(res, texts.get(res.id, "")))
    writer.commit()
    writer.wait_merging_threads()
    seconds = time.perf_counter() - t0
    index.reload()
    assert index.searcher().num_docs == len(records)
    return {"docs": len(records), "seconds": seconds, "per_s": len(records) / seconds}


def run(data_dir: Path, n: int) -> dict[str, Any]:
    docs = list(documents(0, n, SMALL_MAX_BYTES))
    mean_bytes = sum(len(d.body) for d in docs) / len(docs)
    home_one = fresh_dir(data_dir / "ingest-one-by-one")
    home_bulk = fresh_dir(data_dir / "ingest-bulk")
    log(f"  one by one: {n:,} persists, each committed to the index")
    one_s = _persist_all(home_one, docs, bulk=False)
    log(f"    {n / one_s:,.1f}/s")
    log(f"  bulk: {n:,} persists in one service.batch()")
    bulk_s = _persist_all(home_bulk, docs, bulk=True)
    log(f"    {n / bulk_s:,.1f}/s")
    home_many = fresh_dir(data_dir / "ingest-persist-many")
    many_s = _persist_many(home_many, docs)
    if many_s is not None:
        log(f"  service.persist_many: {n / many_s:,.1f}/s")
    raw = raw_tantivy(home_bulk, data_dir / "ingest-raw-tantivy")
    log(f"  raw tantivy: {raw['per_s']:,.0f}/s")
    return {
        "docs": n, "mean_body_bytes": round(mean_bytes),
        "one_by_one": {"seconds": one_s, "per_s": n / one_s},
        "bulk": {"seconds": bulk_s, "per_s": n / bulk_s},
        "persist_many": ({"seconds": many_s, "per_s": n / many_s} if many_s else None),
        "persist_many_vs_raw": ((n / many_s) / raw["per_s"]) if many_s else None,
        "raw_tantivy": raw,
        "one_by_one_vs_raw": (n / one_s) / raw["per_s"],
        "bulk_vs_raw": (n / bulk_s) / raw["per_s"],
        "homes": {"one_by_one": str(home_one), "bulk": str(home_bulk)},
    }
