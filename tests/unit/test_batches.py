"""Prepared batch lines: what the plan writes is exactly what a chunk activity reads back."""

from shared.engine.batches import PreparedBatch, batch_line


def parse_batch_line(parts: list[str]):
    line = "".join(parts)
    assert line.endswith("\n") and line.count("\n") == 1
    batch = PreparedBatch(line.rstrip("\n").encode("utf-8"))
    return batch.rows, list(batch.keys), batch.identifiers, bytes(batch.items).decode("utf-8")


def test_a_batch_line_round_trips():
    line = batch_line([3, 4, 9], ["ana@example.com", "ben@example.com", "cy@example.com"],
                      [" Ana@Example.com", "ben@example.com", "CY@example.com "], '[{"a":1},{"b":2},{"c":3}]')
    assert parse_batch_line(line) == ([3, 4, 9], ["ana@example.com", "ben@example.com", "cy@example.com"],
                                      [" Ana@Example.com", "ben@example.com", "CY@example.com "],
                                      '[{"a":1},{"b":2},{"c":3}]')


def test_values_holding_separators_still_round_trip():
    identifiers = ["tab\there", "new\nline", "unit\x1fseparator"]
    line = batch_line([1, 2, 3], ["k1", "k\t2", "k3"], identifiers, "[1,2,3]")
    assert parse_batch_line(line) == ([1, 2, 3], ["k1", "k\t2", "k3"], identifiers, "[1,2,3]")


def test_identifiers_written_as_their_keys_are_stored_once():
    keys = [f"user{i}@example.com" for i in range(3)]
    identifiers = ["user0@example.com", "User1@Example.com", "user2@example.com"]
    line = batch_line([1, 2, 3], keys, identifiers, "[1,2,3]")
    assert "".join(line).count("user0@example.com") == 1  # once, as the key
    assert parse_batch_line(line) == ([1, 2, 3], keys, identifiers, "[1,2,3]")


def test_row_numbers_are_stored_as_runs_and_read_back_exactly():
    import random

    from shared.engine.batches import row_runs

    assert row_runs([3, 4, 5, 6, 9, 11, 12]) == "3-6,9,11-12"
    generator = random.Random(7)
    for _ in range(300):
        count = generator.choice([1, 2, 75, 1000])
        rows, row = [], generator.randint(1, 10**9)
        for _ in range(count):  # increasing, mostly consecutive: as a batch's rows are
            row += 1 if generator.random() < 0.9 else generator.randint(2, 5)
            rows.append(row)
        keys = [f"k{i}" for i in range(count)]
        line = "".join(batch_line(rows, keys, keys, "[]")).rstrip("\n").encode()
        batch = PreparedBatch(line)
        assert (batch.count, batch.last_row) == (count, rows[-1])
        assert batch.rows == rows


def test_a_line_written_before_runs_reads_the_same():
    batch = PreparedBatch(b"3,4,5,9\tk1\x1fk2\x1fk3\x1fk4\t\x1f\x1f\x1f\t[1,2,3,4]")
    assert (batch.rows, batch.count, batch.last_row, list(batch.keys)) == ([3, 4, 5, 9], 4, 9, ["k1", "k2", "k3", "k4"])


def test_a_vendor_whose_items_are_its_keys_stores_them_once():
    """Snapchat's keys are the hashes its items already hold: the line does not repeat them
    (half of a Snapchat chunk's bytes), and reads them back from the items when asked."""
    from destinations.snapchat import Snapchat

    hashes = [f"{i:064x}" for i in range(3)]
    identifiers = ["ana@example.com", f"{1:064x}", "Cy@Example.com "]  # the second one hashed upstream
    items = Snapchat.encode_batch(None, hashes)
    parts = batch_line([7, 8, 10], hashes, identifiers, items, keys_in_items=True)
    line = "".join(parts).rstrip("\n").encode("utf-8")
    assert line.count(hashes[0].encode()) == 1 and line.count(hashes[1].encode()) == 2  # in the items; identifier
    batch = PreparedBatch(line, Snapchat.keys_of_batch)
    assert (batch.count, batch.last_row, batch.rows) == (3, 10, [7, 8, 10])
    assert batch.identifiers == identifiers
    assert list(batch.keys) == hashes
    assert bytes(batch.items).decode() == items


def test_keys_left_in_the_items_read_back_even_beside_identifiers_holding_separators():
    from destinations.snapchat import Snapchat

    hashes = [f"{i:064x}" for i in range(2)]
    identifiers = ["tab\there@example.com", "unit\x1f@example.com"]
    items = Snapchat.encode_batch(None, hashes)
    line = "".join(batch_line([1, 2], hashes, identifiers, items, keys_in_items=True)).rstrip("\n").encode()
    batch = PreparedBatch(line, Snapchat.keys_of_batch)
    assert (batch.count, batch.identifiers, list(batch.keys)) == (2, identifiers, hashes)


def test_keys_left_in_the_items_need_the_destination_to_read_them():
    import pytest

    line = "".join(batch_line([1], ["k"], ["K"], '["k"]', keys_in_items=True)).rstrip("\n").encode()
    batch = PreparedBatch(line)
    assert (batch.count, batch.identifiers) == (1, ["K"])  # what accounting needs reads without it
    with pytest.raises(ValueError, match="keys_of_batch"):
        list(batch.keys)
