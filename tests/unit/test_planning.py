"""Planning in parts: what one part hands on to the next within a process."""

from shared.engine import planning
from shared.engine.rows import FirstSeen


def test_the_dedupe_state_kept_between_plan_parts_is_bounded_to_the_latest_runs(monkeypatch):
    monkeypatch.setattr(planning, "_first_seen_cache", {})
    monkeypatch.setattr(planning, "CACHED_PLANS", 2)
    for run in ("r1", "r2", "r3"):  # r1's run died between parts: nothing will take its state
        planning._keep_first_seen(("vip", run), 1, FirstSeen())
    assert list(planning._first_seen_cache) == [("vip", "r2"), ("vip", "r3")]
