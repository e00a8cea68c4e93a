"""The change log: positions commit in order, are never reused, and are pruned only
behind every registered follower."""
from __future__ import annotations

from storage.catalog import Catalog


def test_positions_increase_and_are_never_reused_after_pruning(tmp_path):
    cat = Catalog(tmp_path / "catalog.db")
    with cat.transaction() as conn:
        first = cat.enqueue_index(conn, "X")
    cat.set_follower("a", first)
    assert cat.prune_changes() == 1
    with cat.transaction() as conn:
        second = cat.enqueue_index(conn, "Y")
    assert second > first
    assert cat.changes_after(0) == [(second, "Y")]
    assert cat.head() == second


def test_a_reader_sees_a_prefix_of_the_log(tmp_path):
    a, b = Catalog(tmp_path / "catalog.db"), Catalog(tmp_path / "catalog.db")
    with a.transaction() as conn:
        x = a.enqueue_index(conn, "X")
    seen = b.changes_after(0)
    with b.transaction() as conn:
        y = b.enqueue_index(conn, "Y")
    # A follower that applied what it saw resumes after it, so Y is still ahead of it.
    assert seen == [(x, "X")]
    assert a.changes_after(seen[-1][0]) == [(y, "Y")]


def test_pruning_stops_at_the_slowest_follower(tmp_path):
    cat = Catalog(tmp_path / "catalog.db")
    with cat.transaction() as conn:
        positions = [cat.enqueue_index(conn, f"R{i}") for i in range(5)]
    cat.set_follower("fast", positions[4])
    cat.set_follower("slow", positions[1])
    cat.prune_changes()
    assert [p for p, _ in cat.changes_after(0)] == positions[2:]
    assert cat.pruned_through() == positions[1]
    cat.set_follower("slow", positions[0])          # a follower never moves back
    assert cat.followers()["slow"][0] == positions[1]
    assert cat.outbox_size() == positions[4] - positions[1]


def test_seq_comes_from_a_counter(tmp_path):
    cat = Catalog(tmp_path / "catalog.db")
    with cat.transaction() as conn:
        values = [cat.next_seq(conn) for _ in range(3)]
    assert values == sorted(set(values)) and len(values) == 3
