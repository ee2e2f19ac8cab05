"""Progress records: what a chunk confirmed, counted once however records were appended."""

from shared.engine.tally import Tally


def test_a_progress_record_appended_twice_is_counted_once():
    """Storage may retry an append whose answer was lost: the same record, twice."""
    records = _records_of_one_execution([10, 20])
    restored = Tally("s.csv")
    assert restored.restore([records[0], records[0], records[1], records[1]]) == 20
    assert (restored.rows, restored.delivered, restored.requests["requests"]) == (20, 20, 2)


def _records_of_one_execution(ends: list[int], batch_rows: int = 10) -> list[dict]:
    """The progress records one execution of a chunk writes: a batch of `batch_rows` rows
    confirmed at a time, a record at each of `ends` (its progress interval decides where)."""
    tally, records, row = Tally("s.csv"), [], 0
    while row < ends[-1]:
        row += batch_rows
        tally.rows += batch_rows
        tally.delivered += batch_rows
        if row in ends:
            records.append(tally.record(row, {"requests": 1}))
    return records


def test_records_of_two_executions_of_a_chunk_at_once_count_each_row_once():
    """Activities run at least once: a second execution of a chunk can send while the first
    still does, each recording at its own pace. Their records interleave in the chunk's
    progress; a record overlapping rows already counted must not count them again."""
    first = _records_of_one_execution([10, 30])
    second = _records_of_one_execution([20, 40])
    interleaved = [first[0], second[0], first[1], second[1]]
    restored = Tally("s.csv")
    # Rows 1-30 counted once, from the first execution's records; the second's overlap them.
    assert restored.restore(interleaved) == 30
    assert (restored.rows, restored.delivered, restored.requests["requests"]) == (30, 30, 2)


def test_a_record_goes_on_from_the_last_counted_after_a_resume():
    """A resumed execution's records continue from the row its restore ended at."""
    earlier = _records_of_one_execution([10, 20])
    resumed = Tally("s.csv")
    assert resumed.restore(earlier) == 20
    resumed.rows += 10
    resumed.delivered += 10
    later = resumed.record(30, {})
    assert later["after"] == 20
    assert Tally("s.csv").restore(earlier + [later]) == 30


def test_records_stored_before_they_carried_where_they_start_still_count():
    records = _records_of_one_execution([10, 20])
    for record in records:
        del record["after"]
    restored = Tally("s.csv")
    assert restored.restore(records + [records[1]]) == 20
    assert restored.delivered == 20
