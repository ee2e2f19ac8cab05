"""Planning in parts: what one part hands on to the next within a process."""

from shared.engine import chunking, planning
from shared.engine.first_seen import FirstSeen


def test_the_dedupe_state_kept_between_plan_parts_is_bounded_to_the_latest_runs(monkeypatch):
    monkeypatch.setattr(planning, "_first_seen_cache", {})
    monkeypatch.setattr(planning, "CACHED_PLANS", 2)
    for run in ("r1", "r2", "r3"):  # r1's run died between parts: nothing will take its state
        planning._keep_first_seen(("vip", run), 1, FirstSeen())
    assert list(planning._first_seen_cache) == [("vip", "r2"), ("vip", "r3")]


def _plan(segment_bytes: list[int], expected_rows: int, rows_per_chunk: int) -> dict:
    """A plan whose cursor is in its first segment; every segment has a 100-byte header."""
    return {"segments": [{"bytes": size, "data_start": 100} for size in segment_bytes],
            "cursor": {"segment": 0, "rows_per_chunk": rows_per_chunk, "expected_rows": expected_rows}}


def test_chunks_are_full_until_the_end_of_the_segments_comes_near():
    plan = _plan([1_000_100], expected_rows=100_000, rows_per_chunk=10_000)  # 10 bytes a row
    assert chunking.chunk_rows(plan, 100, full_only=False, batch=1_000) == 10_000
    assert chunking.chunk_rows(plan, 700_100, full_only=False, batch=1_000) == 8_000  # 30,000 rows left
    assert chunking.chunk_rows(plan, 900_100, full_only=False, batch=1_000) == 3_000  # at least a quarter


def test_the_rows_of_later_segments_count_as_rows_left():
    plan = _plan([500_100, 500_100], expected_rows=100_000, rows_per_chunk=10_000)
    assert chunking.chunk_rows(plan, 400_100, full_only=False, batch=1_000) == 10_000  # 60,000 rows left


def test_a_configured_chunk_size_or_one_chunk_at_a_time_keeps_chunks_full_to_the_end():
    plan = _plan([1_000_100], expected_rows=100_000, rows_per_chunk=10_000)
    assert chunking.chunk_rows(plan, 900_100, full_only=True, batch=1_000) == 10_000


def test_a_tail_chunk_holds_whole_batches():
    plan = _plan([1_000_100], expected_rows=100_000, rows_per_chunk=100_000)
    assert chunking.chunk_rows(plan, 100, full_only=False, batch=30_000) == 30_000  # 25,000 rounded up
