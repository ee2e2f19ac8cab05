"""Parsing a segment's bytes: whatever the shapes of its rows and wherever its blocks and
downloads are cut, the rows are those the csv module reads."""

import csv
import io
import itertools
import random

import pytest

from shared.segments import FlatRows, SegmentError, parsing


def _segment_text(rng: random.Random) -> str:
    """Rows of one usual width with some of another, blank lines, LF, CRLF or both, lone
    CRs (also as the only line end: old Mac files), quoted fields, quotes inside unquoted
    fields, non-ASCII, with or without a final line end; or every field quoted, as
    Customer Insights writes them (`_quote_always_text`)."""
    if rng.random() < 0.3:
        return _quote_always_text(rng)
    width = rng.choice([1, 2, 3, 5])
    line_end = rng.choice(["\n", "\r\n", "\r", None])  # None: each line its own
    lines = []
    for _ in range(rng.randint(1, 60)):
        if rng.random() < 0.05:
            lines.append("")
            continue
        fields = []
        for _ in range(width if rng.random() > 0.1 else rng.randint(1, 6)):
            value = "".join(rng.choice("ab@. xé") for _ in range(rng.randint(0, 5)))
            if rng.random() < 0.03:
                value = f"{value}\r{value}"
            if rng.random() < 0.03 and value:  # a quote inside an unquoted field (5'11"): csv keeps it
                value = value[:1] + '"' + value[1:]
            if rng.random() < 0.03:
                value = '"' + value.replace('"', '""') + '"'
            fields.append(value)
        lines.append(",".join(fields))
    text = "".join(line + (line_end or rng.choice(["\n", "\r\n"])) for line in lines)
    return text.rstrip("\r\n") if rng.random() < 0.3 else text


def _quote_always_text(rng: random.Random) -> str:
    """Every field quoted (CsvStyle.QuoteAlways), mostly of one width, LF or CRLF; now and
    then an empty field, a quote (doubled), a comma or a line break inside one, a line
    left unquoted or of another width, a blank line."""
    width, line_end = rng.choice([1, 2, 4]), rng.choice(["\n", "\r\n"])
    lines = []
    for _ in range(rng.randint(1, 60)):
        if rng.random() < 0.02:
            lines.append("")
            continue
        fields = ["".join(rng.choice("ab@. xé") for _ in range(rng.randint(0, 5)))
                  for _ in range(width if rng.random() > 0.05 else rng.randint(1, 5))]
        for at, odd in enumerate(fields):
            if rng.random() < 0.02:
                fields[at] = odd + rng.choice(['"', ",", "\n", "\r\n"]) + odd
        quoted = rng.random() > 0.02
        lines.append(",".join('"' + f.replace('"', '""') + '"' if quoted else f.replace('"', "") for f in fields))
    text = "".join(line + line_end for line in lines)
    return text.rstrip("\r\n") if rng.random() < 0.3 else text


def test_rows_are_those_csv_reads_whatever_their_shapes_and_the_block_cuts(monkeypatch):
    rng = random.Random(20261124)
    compared = quoted_flat = 0
    for _ in range(1500):
        text = _segment_text(rng)
        try:
            expected = [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
        except csv.Error:
            continue  # not CSV at all (a lone CR against a quote): the reader's error, tested elsewhere
        monkeypatch.setattr(parsing, "BLOCK_BYTES", rng.choice([16, 64, 512, 1 << 20]))
        data = text.encode("utf-8")
        downloads = iter([data[at:at + 37] for at in range(0, len(data), 37)])
        try:
            blocks = list(parsing.cut_blocks("a.csv", downloads, 0, 1))
        except SegmentError as error:  # pragma: no cover - shown as the failure it is
            pytest.fail(f"{text!r}: {error}")
        # Row by row (a rejected row's fields) and all at once (iterating a block), alike.
        assert [block.rows[at] for block in blocks for at in range(len(block.rows))] == expected, repr(text)
        assert [row for block in blocks for row in block.rows] == expected, repr(text)
        for block in blocks:  # and a column of rows held flat is that field of each row
            if isinstance(block.rows, FlatRows):
                rows = list(block.rows)
                for index in range(block.rows.width):
                    assert block.rows.column(index) == [row[index] for row in rows], repr(text)
        compared += 1
        quoted_flat += any(block.lines_are_rows and b'"' in block.data for block in blocks)
    assert compared > 1000
    assert quoted_flat > 100  # the quoted texts' fast path was compared too, not only csv's


def test_rows_with_every_field_quoted_are_held_flat_and_cut_at_their_line_ends(monkeypatch):
    """What Customer Insights writes: split as unquoted text is, where csv took 1.5-2.5 µs a row,
    and a chunk boundary found by counting lines, where reading the rows one by one took
    up to 20 ms a block."""
    text = '"C1","ana@example.com","Ana, the first"\r\n"C2","","Ben"\r\n"C3","cy@example.com",""\r\n'
    (block,) = parsing.cut_blocks("a.csv", iter([text.encode()]), 0, 1)
    assert isinstance(block.rows, FlatRows) and block.lines_are_rows
    assert list(block.rows) == [["C1", "ana@example.com", "Ana, the first"], ["C2", "", "Ben"],
                                ["C3", "cy@example.com", ""]]

    def read_one_by_one(*args):
        raise AssertionError("rows read one by one")

    monkeypatch.setattr(parsing, "_rows_with_ends", read_one_by_one)
    assert parsing.offset_after(block, 2) == text.index('"C3"')


def test_splitting_quoted_rows_agrees_with_csv_on_every_short_text_or_declines():
    """Every text of up to 7 quotes, commas, letters and line breaks (up to 6 with CRs too):
    wherever the fast path takes a text, csv reads the same rows from it."""
    taken = 0
    for alphabet, longest in (('",a\n', 7), ('",a\n\r', 6)):
        for length in range(1, longest + 1):
            for text in map("".join, itertools.product(alphabet, repeat=length)):
                rows = parsing._split_quoted(text)
                if rows is None:
                    continue
                taken += 1
                assert list(rows) == [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row], \
                    repr(text)
    assert taken > 150


def test_a_file_whose_rows_end_in_a_lone_cr_is_cut_into_blocks_like_any_other(monkeypatch):
    """Old Mac line ends (CR only): blocks were cut only at LFs, so such a file was one
    block however large, and refused ("no row ends within 64 MB") past MAX_ROW_BYTES."""
    monkeypatch.setattr(parsing, "BLOCK_BYTES", 64)
    monkeypatch.setattr(parsing, "MAX_ROW_BYTES", 256)
    text = "".join(f'u{n}@example.com,"Name {n}\r\nwith a line end",{n}\r' for n in range(200))
    data = text.encode("utf-8")
    blocks = list(parsing.cut_blocks("mac.csv", iter([data[at:at + 50] for at in range(0, len(data), 50)]), 0, 1))
    assert [row for block in blocks for row in block.rows] == list(csv.reader(io.StringIO(text, newline="")))
    assert len(blocks) > 50  # cut at its CRs, each block within its bound
    assert all(block.end - block.start <= 256 for block in blocks)
    numbers = [block.first_row for block in blocks]
    assert numbers == [1 + sum(len(b.rows) for b in blocks[:at]) for at in range(len(blocks))]


def test_cr_line_ends_are_found_by_counting_not_by_the_slow_reading(monkeypatch):
    """Reading rows as csv does finds CR row ends too, at a Python loop's cost per line: a
    file with old Mac line ends should be cut at its CRs as fast as one with LFs."""
    monkeypatch.setattr(parsing, "BLOCK_BYTES", 64)
    read = []
    monkeypatch.setattr(parsing, "_last_row_end_read",
                        lambda buffer, limit: read.append(limit) or pytest.fail("read row by row"))
    text = "".join(f"u{n}@example.com,Name {n}\r" for n in range(300))
    blocks = list(parsing.cut_blocks("mac.csv", iter([text.encode()]), 0, 1))
    assert sum(len(block.rows) for block in blocks) == 300 and len(blocks) > 50 and not read


def test_a_malformed_row_in_the_last_block_is_named_by_its_own_row_number():
    """The rows before it parse; the message names the row where csv fails, not the block's first."""
    data = b'ana@example.com,fine\nbo@example.com,"x"y\ncy@example.com,x\n'
    with pytest.raises(SegmentError, match=r"malformed CSV at row 2 \(in bytes 0 to"):
        list(parsing.cut_blocks("a.csv", iter([data]), 0, 1))


def test_a_quote_inside_an_unquoted_field_does_not_make_the_rest_of_the_file_one_block(monkeypatch):
    """`Ann 5'11" tall` is one field for csv. Counting quotes to find row ends, every
    newline after it looked quoted: the block grew to the end of the file, every newline
    counted again at each growth (a 2 MB file took 74 s), and past MAX_ROW_BYTES the file
    was refused as "a quote is probably never closed"."""
    monkeypatch.setattr(parsing, "BLOCK_BYTES", 256)
    monkeypatch.setattr(parsing, "MAX_ROW_BYTES", 4096)
    height = "Ann 5'11\" tall"
    rows = [f"u{n}@example.com,{height if n % 50 == 1 else n}" for n in range(2000)]
    text = "\n".join(rows) + "\n"
    data = text.encode("utf-8")
    blocks = list(parsing.cut_blocks("a.csv", iter([data[at:at + 1000] for at in range(0, len(data), 1000)]), 0, 1))
    assert [row for block in blocks for row in block.rows] == list(csv.reader(io.StringIO(text, newline="")))
    assert max(block.end - block.start for block in blocks) <= 4 * 256


def test_a_field_longer_than_the_csv_modules_default_limit_is_read(monkeypatch):
    """csv refuses fields over 128 KB by default: a file with one long quoted note was
    refused whole as "malformed CSV"."""
    note = "n" * 300_000
    text = f'Email,Notes\na@example.com,"{note}, quoted"\nb@example.com,short\n'
    data = text.encode("utf-8")
    blocks = list(parsing.cut_blocks("a.csv", iter([data]), 0, 1))
    assert [row for block in blocks for row in block.rows] == [
        ["Email", "Notes"], ["a@example.com", f"{note}, quoted"], ["b@example.com", "short"]]


def test_a_chunk_boundary_falls_just_past_the_rows_before_it_whatever_the_line_ends(monkeypatch):
    """`offset_after(block, n)` is where a chunk of the block's first n rows ends: the bytes
    before it are exactly those rows as csv reads them (a lone CR ends a row for csv too;
    counting only LFs put a boundary rows later, and the rows between were never read)."""
    rng = random.Random(20261125)
    compared = 0
    for _ in range(600):
        text = _segment_text(rng)
        try:
            list(csv.reader(io.StringIO(text, newline=""), strict=True))
        except csv.Error:
            continue
        monkeypatch.setattr(parsing, "BLOCK_BYTES", rng.choice([16, 64, 512, 1 << 20]))
        data = text.encode("utf-8")
        for block in parsing.cut_blocks("a.csv", iter([data]), 0, 1):
            for count in range(1, len(block.rows) + 1):
                end = parsing.offset_after(block, count)
                before = data[block.start:end].decode("utf-8")
                rows = [row for row in csv.reader(io.StringIO(before, newline=""), strict=True) if row]
                assert rows == [block.rows[at] for at in range(count)], (repr(text), block.start, count)
                compared += 1
    assert compared > 1000
