"""`python -m bench.steps`: the per-step costs the README's account of what bounds the plan rests on."""

import pytest

from bench.segments import HEADER, profile_lines, profile_rows
from bench.steps import measure
from destinations import SPECS
from shared.segments.parsing import cut_blocks


@pytest.mark.parametrize("destination", sorted(SPECS))
def test_each_plan_step_is_timed_for_every_destination(destination):
    # The benchmarks' own export to each vendor (a destination added without one fails here).
    figures = measure(20_000, destination, repeats=1)
    steps = figures["cpu_s_per_million_rows"]
    timed = ("parse", "classify", "dedupe", "items", "compress")
    assert all(steps[step] > 0 for step in timed)
    assert steps["plan_steps"] == pytest.approx(sum(steps[step] for step in timed), abs=0.01)
    assert figures["rows_per_s_one_thread"] == round(1_000_000 / steps["plan_steps"])
    if SPECS[destination].identifier == "email":
        assert steps["emails"] > 0 and steps["keys"] > 0


def test_rows_written_as_customer_insights_writes_them_are_timed_too():
    figures = measure(5_000, "snapchat", repeats=1, quote_always=True)
    assert figures["quote_always"] and figures["cpu_s_per_million_rows"]["parse"] > 0


def test_the_quoted_rows_are_the_same_profiles_every_field_quoted():
    quoted = b"".join(profile_rows(1_000, 0, 1_000, quote_always=True))
    plain = b"".join(profile_rows(1_000, 0, 1_000))
    assert quoted.startswith(b'"C000000000","person0@example.com",')
    assert quoted.replace(b'"', b"") == plain == b"".join(profile_lines(1_000))[len(HEADER):]
    assert [row for block in cut_blocks("q.csv", iter([quoted]), 0, 1) for row in block.rows] == \
        [row for block in cut_blocks("p.csv", iter([plain]), 0, 1) for row in block.rows]
