"""Reading segment files from Blob Storage (Azurite): encodings, line ends, quoting, ranges."""

import csv
import io
import threading
import time

import pytest

from shared.segments import FlatRows, SegmentError, offset_after, resolve_columns
from tests.support import upload_segment, watch_parsed_blocks


def read_all(storage, path, start=None, end=None, first_row=1):
    """The segment's info and its blocks (of the whole data, or of bytes [start, end))."""
    reader = storage.segments
    info = reader.info(path)
    start = info.data_start if start is None else start
    return info, list(reader.blocks(path, start, info.size if end is None else end, first_row=first_row))


def rows_of(blocks):
    return [row for block in blocks for row in block.rows]


def test_bom_crlf_and_quoted_fields_with_commas_quotes_and_newlines(storage, unique):
    text = ('\ufeffEmail,Name,Note\r\n'
            'ana@example.com,"Silva, Ana","line one\r\nline two"\r\n'
            'ben@example.com,"Ben ""the boss""",plain\r\n')
    path = upload_segment(storage, f"{unique}/quoted.csv", text)
    info, blocks = read_all(storage, path)
    assert info.header == ["Email", "Name", "Note"]
    assert rows_of(blocks) == [["ana@example.com", "Silva, Ana", "line one\r\nline two"],
                               ["ben@example.com", 'Ben "the boss"', "plain"]]
    assert blocks[0].first_row == 1
    assert blocks[-1].end == info.size


def test_lf_without_final_newline_and_blank_lines_are_not_rows(storage, unique):
    path = upload_segment(storage, f"{unique}/lf.csv", "Email\nana@example.com\n\nben@example.com")
    _, blocks = read_all(storage, path)
    assert rows_of(blocks) == [["ana@example.com"], ["ben@example.com"]]


def test_a_byte_range_starting_at_a_row_boundary_reads_exactly_its_rows(storage, unique):
    lines = ["Email"] + [f'"user{i}@example.com"' for i in range(10)]
    path = upload_segment(storage, f"{unique}/range.csv", "\n".join(lines) + "\n")
    info, blocks = read_all(storage, path)
    start, end = offset_after(blocks[0], 3), offset_after(blocks[0], 7)
    _, middle = read_all(storage, path, start, end, first_row=4)
    assert middle[0].first_row == 4
    assert rows_of(middle) == [[f"user{i}@example.com"] for i in range(3, 7)]


def test_a_file_larger_than_a_download_block_streams_row_by_row(storage, unique, monkeypatch):
    # A quoted field with a newline straddles the 4 MB block boundary somewhere in this file.
    row = '"{0}@example.com","multi\nline, {0}"\n'
    body = "".join(row.format(i) for i in range(150_000))
    path = upload_segment(storage, f"{unique}/big.csv", "Email,Note\n" + body)
    info, blocks = read_all(storage, path)
    assert info.size > 4 * 1024 * 1024 and len(blocks) > 4
    rows = rows_of(blocks)
    assert len(rows) == 150_000
    assert rows[-1] == ["149999@example.com", "multi\nline, 149999"]
    assert [block.first_row for block in blocks] == [1] + [1 + sum(len(b.rows) for b in blocks[:i])
                                                           for i in range(1, len(blocks))]


@pytest.mark.parametrize("body", [
    "ana@example.com,Ana,PT\r\nben@example.com,Ben,BR\r\n",  # CRLF, every row of one width
    "ana@example.com,Ana,PT\nben@example.com,Ben,BR",  # LF, no final line end
    "ana@example.com,Ana,PT\nben@example.com,Ben\ncy@example.com,Cy,PT,extra\n",  # widths differ
    "ana@example.com,Ana,PT\r\nben@example.com,Ben,BR\ncy@example.com,Cy,PT\r\n",  # CRLF and a lone LF
    "ana@example.com,Ana,PT\r\nben@example.com,Ben,B\rR\r\n",  # a lone CR
    "ana@example.com,Ana,PT\n\nben@example.com,Ben,BR\n\n",  # blank lines
])
def test_unquoted_rows_are_read_as_csv_reads_them_whatever_their_line_ends_and_widths(storage, unique, body):
    path = upload_segment(storage, f"{unique}/plain.csv", "Email,Name,Country\r\n" + body)
    _, blocks = read_all(storage, path)
    expected = [row for row in csv.reader(io.StringIO(body, newline="")) if row]
    assert rows_of(blocks) == expected
    # Row by row as the plan asks for a rejected row's fields, too.
    assert [block.rows[index] for block in blocks for index in range(len(block.rows))] == expected


def test_rows_of_one_width_are_held_flat_and_give_a_column_without_a_list_per_row(storage, unique):
    # The usual block: its columns are slices of one list of fields (what the plan's speed rests on).
    body = "".join(f"person{i}@example.com,Name {i},PT\n" for i in range(5))
    path = upload_segment(storage, f"{unique}/flat.csv", "Email,Name,Country\n" + body)
    _, (block,) = read_all(storage, path)
    assert isinstance(block.rows, FlatRows) and block.rows.width == 3 and len(block.rows) == 5
    assert block.rows.column(0) == [f"person{i}@example.com" for i in range(5)]
    assert block.rows[-1] == block.rows[4] == ["person4@example.com", "Name 4", "PT"]
    assert block.rows[1:3] == [["person1@example.com", "Name 1", "PT"], ["person2@example.com", "Name 2", "PT"]]
    with pytest.raises(IndexError):
        block.rows[5]
    # A width-1 file with a blank line cannot be held flat (a blank line has one field too).
    path = upload_segment(storage, f"{unique}/one-column.csv", "Email\nana@example.com\n\nben@example.com\n")
    _, (block,) = read_all(storage, path)
    assert not isinstance(block.rows, FlatRows) and block.rows == [["ana@example.com"], ["ben@example.com"]]


def test_bytes_that_are_not_utf8_mark_only_their_row(storage, unique):
    data = b"Email,Name\nana@example.com,Ana\n" + b"ben@example.com,B\xe9n\n" + b"cy@example.com,Cy\n"
    path = upload_segment(storage, f"{unique}/latin1.csv", data)
    _, blocks = read_all(storage, path)
    assert [block.bad for block in blocks] == [frozenset({1})]  # the second row, and only it
    assert rows_of(blocks)[1] == ["ben@example.com", "B\ufffdn"]


def test_missing_segment_empty_file_and_blank_header_are_clear_errors(storage, unique):
    with pytest.raises(SegmentError, match=f"segment {unique}/nope.csv was not found in container segments"):
        storage.segments.info(f"{unique}/nope.csv")
    upload_segment(storage, f"{unique}/empty.csv", "")
    with pytest.raises(SegmentError, match="is empty: expected a header row"):
        storage.segments.info(f"{unique}/empty.csv")
    upload_segment(storage, f"{unique}/blank.csv", ",,\nana@example.com,,\n")
    with pytest.raises(SegmentError, match="the header row is blank"):
        storage.segments.info(f"{unique}/blank.csv")


def test_a_mapped_column_named_twice_in_the_header_is_a_clear_error(storage, unique):
    """`Email` and `email` both match the mapping: reading the first one silently skipped
    rows whose address was in the other."""
    with pytest.raises(SegmentError, match=r'"Email" \(columns 1, 3\) more than once'):
        resolve_columns("a.csv", ["Email", "Name", "email "], {"email": "Email", "attribute:name": "Name"})
    assert resolve_columns("a.csv", ["Email", "Name", "name"], {"email": "Email"}) == {"email": 0}  # unmapped: fine


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le", "utf-32"])
def test_a_file_not_in_utf8_is_named_as_such_not_as_missing_columns(storage, unique, encoding):
    """A UTF-16 file was reported as lacking its mapped columns, with NUL bytes in the message."""
    path = upload_segment(storage, f"{unique}/{encoding}.csv",
                          "CustomerId,Email\r\nC1,a@example.com\r\n".encode(encoding))
    with pytest.raises(SegmentError, match="UTF-(16|32).*save it as UTF-8") as raised:
        storage.segments.info(path)
    assert "\x00" not in str(raised.value)


def test_an_unterminated_quote_is_a_clear_error_naming_its_row(storage, unique):
    path = upload_segment(storage, f"{unique}/open-quote.csv",
                          'Email,Note\nana@example.com,fine\nbo@example.com,"never closed\ncy@example.com,x\n')
    with pytest.raises(SegmentError, match=r"malformed CSV at row 2 .*a quote opened there is never closed"):
        read_all(storage, path)


def test_a_quote_inside_an_unquoted_field_does_not_cut_a_row_in_two(storage, unique):
    # The block cut guesses row ends from quote parity; a stray quote fools it, and csv then
    # tells: the block is read on until it parses.
    rows = [f'{i},5\'11",note' for i in range(50_000)] + ['50000,"a\nb",x']
    path = upload_segment(storage, f"{unique}/stray.csv", "Id,Height,Note\n" + "\n".join(rows) + "\n")
    _, blocks = read_all(storage, path)
    parsed = rows_of(blocks)
    assert len(parsed) == 50_001 and parsed[-1] == ["50000", "a\nb", "x"]


def test_columns_match_case_insensitively_and_a_missing_one_lists_what_exists():
    header = [" Email ", "CustomerId", "First Name"]
    assert resolve_columns("a.csv", header, {"email": "email", "customer_id": "CUSTOMERID"}) == {
        "email": 0, "customer_id": 1}
    with pytest.raises(SegmentError) as caught:
        resolve_columns("a.csv", header, {"email": "Email", "attribute:city": "City", "attribute:zip": "Zip"})
    assert str(caught.value) == ('segment a.csv: mapped column(s) "City", "Zip" not found; '
                                 'the file has " Email ", "CustomerId", "First Name"')


def test_a_segment_removed_while_read_ahead_fails_the_reader_and_its_download_thread_ends(storage, unique):
    # Blocks are downloaded ahead of the parser by a thread: its failure must reach the reader.
    path, blocks = _reading_a_large_segment(storage, f"{unique}/removed.csv")
    storage.container("segments").delete_blob(path)
    with pytest.raises(SegmentError, match="changed or was removed while it was read"):
        for _ in blocks:
            pass
    assert _read_ahead_threads_end()


def test_a_reader_that_stops_early_stops_the_download_thread(storage, unique):
    _, blocks = _reading_a_large_segment(storage, f"{unique}/early.csv")
    blocks.close()
    assert _read_ahead_threads_end()


def _reading_a_large_segment(storage, path):
    """A segment of ~15 MB (many download blocks), and its block reader past the first block."""
    body = "".join(f"user{i}@example.com,{'x' * 60}\n" for i in range(200_000))
    path = upload_segment(storage, path, "Email,Note\n" + body)
    info = storage.segments.info(path)
    blocks = storage.segments.blocks(path, info.data_start, info.size)
    next(blocks)
    return path, blocks


def _read_ahead_threads_end(timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(thread.name == "segment-read-ahead" for thread in threading.enumerate()):
            return True
        time.sleep(0.05)
    return False


def test_a_block_let_go_of_is_freed_before_the_next_is_parsed(storage, unique, monkeypatch):
    # A block's rows take ~7 times its bytes: the reader must not keep the last one while
    # it parses the next (a plan held two at a time).
    body = "".join(f"person{i}@example.com,Name {i}\n" for i in range(60_000))  # ~2 MB: several blocks
    path = upload_segment(storage, f"{unique}/blocks.csv", "Email,Name\n" + body)
    info = storage.segments.info(path)
    alive = watch_parsed_blocks(monkeypatch)
    blocks, rows = storage.segments.blocks(path, info.data_start, info.size), 0
    block = next(blocks)
    while block is not None:
        rows += len(block.rows)
        del block
        block = next(blocks, None)
    assert rows == 60_000 and len(alive) > 3
    assert alive == [0] * len(alive)


# -- plans reading one segment at once share its blocks ---------------------------------

def _quoted_segment(storage, path, rows=60_000):
    """~2.5 MB (five blocks or so), quoted fields with newlines and commas throughout."""
    body = "".join(f'p{i}@example.com,"Name, {i}","line\none"\n' for i in range(rows))
    upload_segment(storage, path, "Email,Name,Note\n" + body)
    return storage.segments.info(path)


def _shared_reads(storage, info, *names, start=None, first_row=1):
    start = info.data_start if start is None else start
    return [storage.segments.blocks(info.path, start, info.size, first_row=first_row, etag=info.etag, shared_by=name)
            for name in names]


def _spans(blocks):
    return [(block.start, block.end, block.first_row, len(block.rows)) for block in blocks]


def test_blocks_read_from_any_block_start_are_those_of_a_read_of_the_whole_file(storage, unique):
    # What lets plans share blocks: where a block ends depends on the file only, not on where
    # the reader started or how its downloads were cut. A row longer than a block included.
    field = '"' + ("x" * 999 + "\n") * 100 + '"'  # 100 KB: csv's own limit on a field is 128 KB
    long_row = "big@example.com," + ",".join([field] * 7) + "\n"
    body = "".join(f'p{i}@example.com,"N, {i}",x\n' for i in range(30_000)) + long_row + \
        "".join(f"q{i}@example.com,M,y\n" for i in range(30_000))
    path = upload_segment(storage, f"{unique}/grid.csv", "Email,Name,Note\n" + body)
    reader = storage.segments
    info = reader.info(path)
    whole = list(reader.blocks(path, info.data_start, info.size))
    assert len(whole) >= 4 and any(block.end - block.start > 700_000 for block in whole)
    for number in (1, len(whole) // 2, len(whole) - 1):
        block = whole[number]
        tail = list(reader.blocks(path, block.start, info.size, first_row=block.first_row))
        assert _spans(tail) == _spans(whole[number:])


def test_plans_reading_a_segment_at_once_read_each_block_once_and_see_the_same_rows(storage, unique):
    from shared.segments.sharing import shared_blocks

    info = _quoted_segment(storage, f"{unique}/shared.csv")
    alone = list(storage.segments.blocks(info.path, info.data_start, info.size))
    shared = shared_blocks()
    read_before, taken_before = shared.read_blocks, shared.taken_blocks
    first, second = _shared_reads(storage, info, "first/run", "second/run")
    seen_first, seen_second = [], []
    for block in first:  # in step, as plans on two threads would be
        seen_first.append(block)
        seen_second.append(next(second))
    assert next(second, None) is None
    assert _spans(seen_first) == _spans(seen_second) == _spans(alone) and len(alone) > 3
    assert [b.rows for b in seen_second] == [b.rows for b in alone]
    assert shared.read_blocks - read_before == len(alone)  # from storage once, by either plan
    assert shared.taken_blocks - taken_before == len(alone)
    assert shared.held() == 0  # nothing kept once both have read it


def test_a_plan_alone_keeps_no_block_but_the_one_it_reads(storage, unique, monkeypatch):
    from shared.segments.sharing import shared_blocks

    info = _quoted_segment(storage, f"{unique}/alone.csv")
    alive = watch_parsed_blocks(monkeypatch)
    (blocks,) = _shared_reads(storage, info, "alone/run")
    block = next(blocks)
    while block is not None:  # as a plan reads: it lets go of a block before it asks for the next
        assert shared_blocks().held() == 1
        del block
        block = next(blocks, None)
    assert shared_blocks().held() == 0
    assert len(alive) > 3 and alive == [0] * len(alive)  # none kept while the next is parsed


def test_a_plan_read_in_parts_finds_the_blocks_read_meanwhile_kept_for_its_next_part(storage, unique, monkeypatch):
    from shared.segments import sharing
    from shared.segments.sharing import shared_blocks

    monkeypatch.setattr(sharing, "HANDOVER_S", 0.0)  # the other plan reads on at once (see the test below)
    info = _quoted_segment(storage, f"{unique}/parts.csv", rows=45_000)  # as many blocks as are kept at most
    shared = shared_blocks()
    read_before = shared.read_blocks
    part, other = _shared_reads(storage, info, "parts/run", "other/run")
    next(other)
    stopped_in = next(part)
    part.close()  # the part ends inside its first block; the other plan reads on meanwhile
    rest = list(other)
    (next_part,) = _shared_reads(storage, info, "parts/run", start=stopped_in.start, first_row=stopped_in.first_row)
    assert _spans(list(next_part)) == _spans([stopped_in] + rest) and 1 + len(rest) == sharing.MOST_BLOCKS
    assert shared.read_blocks - read_before == 1 + len(rest)  # the next part read nothing again
    assert shared.held() == 0


def test_plans_in_front_wait_for_a_plan_between_two_parts_instead_of_keeping_every_block_for_it(storage, unique):
    # A kept block holds its rows and the columns worked out from them (~9 MB for four
    # exports): plans that read on while one was between parts (its last writes slow to
    # be taken) kept the most allowed, and the exporter's memory rose by ~30 MB.
    from shared.segments.sharing import LEAD_BYTES, shared_blocks

    info = _quoted_segment(storage, f"{unique}/handover.csv", rows=150_000)  # ~6 MB: a dozen blocks
    whole = list(storage.segments.blocks(info.path, info.data_start, info.size))
    shared = shared_blocks()
    read_before = shared.read_blocks
    part, front = _shared_reads(storage, info, "paused/run", "front/run")
    stopped_in = next(part)
    part.close()  # its part ends here; its next part starts a moment later
    held, front_blocks = [], []

    def read_on() -> None:
        for block in front:
            front_blocks.append(block.start)
            held.append(shared.held())

    thread = threading.Thread(target=read_on)
    thread.start()
    time.sleep(0.8)  # the part boundary (under HANDOVER_S)
    ahead_while_paused = len(front_blocks)
    (next_part,) = _shared_reads(storage, info, "paused/run", start=stopped_in.start, first_row=stopped_in.first_row)
    assert _spans(list(next_part)) == _spans(whole)
    thread.join()
    assert len(whole) >= 10 and front_blocks == [block.start for block in whole]
    within_lead = sum(block.start <= stopped_in.start + LEAD_BYTES for block in whole)
    assert ahead_while_paused <= within_lead + 1 < len(whole)
    assert max(held) <= within_lead + 2
    assert shared.read_blocks - read_before == len(whole)  # each block read once
    assert shared.held() == 0


def test_a_plan_whose_next_part_does_not_come_holds_the_others_back_briefly(storage, unique, monkeypatch):
    from shared.segments import sharing

    monkeypatch.setattr(sharing, "HANDOVER_S", 0.5)
    info = _quoted_segment(storage, f"{unique}/gone.csv", rows=150_000)
    part, front = _shared_reads(storage, info, "gone/run", "front/run")
    stopped_in = next(part)
    part.close()  # its next part runs on another host, or much later
    started = time.monotonic()
    blocks = list(front)
    assert len(blocks) >= 10 and time.monotonic() - started < sharing.LEAD_WAIT_S  # not up to 2 s a block
    (late,) = _shared_reads(storage, info, "gone/run", start=stopped_in.start, first_row=stopped_in.first_row)
    assert _spans(list(late)) == _spans(blocks)  # what was not kept for it, it reads itself
    assert sharing.shared_blocks().held() == 0


def test_a_malformed_segment_fails_every_plan_reading_it_at_once(storage, unique):
    from shared.segments.sharing import shared_blocks

    body = "".join(f"p{i}@example.com,N\n" for i in range(40_000)) + '"never closed@example.com,N\n'
    path = upload_segment(storage, f"{unique}/broken.csv", "Email,Name\n" + body)
    info = storage.segments.info(path)
    for blocks in _shared_reads(storage, info, "one/run", "two/run"):
        with pytest.raises(SegmentError, match="malformed CSV"):
            list(blocks)
    assert shared_blocks().held() == 0  # a plan that failed keeps no place to go on from
