"""The index outbox across writers: a sync acknowledges exactly what it applied.

Two processes (here: two catalog connections on one file) may both read the same
pending rows; the slower one must never acknowledge a row written after its read.
"""
from __future__ import annotations

from storage.catalog import Catalog


def test_an_ack_never_swallows_a_row_written_after_the_read(tmp_path):
    a, b = Catalog(tmp_path / "catalog.db"), Catalog(tmp_path / "catalog.db")
    with a.transaction() as conn:
        a.enqueue_index(conn, "X")
    seen_by_a = a.pending_index()
    seen_by_b = b.pending_index()
    b.ack_index([row_id for row_id, _ in seen_by_b])     # b applied X first
    with b.transaction() as conn:
        b.enqueue_index(conn, "Y")                         # a new write arrives
    a.ack_index([row_id for row_id, _ in seen_by_a])     # a finishes its (older) batch
    assert [rid for _, rid in a.pending_index()] == ["Y"]


def test_outbox_ids_are_never_reused(tmp_path):
    cat = Catalog(tmp_path / "catalog.db")
    with cat.transaction() as conn:
        cat.enqueue_index(conn, "X")
    first = cat.pending_index()[0][0]
    cat.ack_index([first])
    with cat.transaction() as conn:
        cat.enqueue_index(conn, "Y")
    assert cat.pending_index()[0][0] > first
