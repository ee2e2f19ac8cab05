"""Reading segment files from Blob Storage (Azurite): encodings, line ends, quoting, ranges."""

import pytest

from shared.segments import SegmentError, resolve_columns
from tests.support import upload_segment


def read_all(storage, path):
    reader = storage.segments
    info = reader.info(path)
    return info, list(reader.rows(path, info.data_start, info.size))


def test_bom_crlf_and_quoted_fields_with_commas_quotes_and_newlines(storage, unique):
    text = ('\ufeffEmail,Name,Note\r\n'
            'ana@example.com,"Silva, Ana","line one\r\nline two"\r\n'
            'ben@example.com,"Ben ""the boss""",plain\r\n')
    path = upload_segment(storage, f"{unique}/quoted.csv", text)
    info, rows = read_all(storage, path)
    assert info.header == ["Email", "Name", "Note"]
    assert [r.fields for r in rows] == [["ana@example.com", "Silva, Ana", "line one\r\nline two"],
                                        ["ben@example.com", 'Ben "the boss"', "plain"]]
    assert [r.number for r in rows] == [1, 2]
    assert rows[-1].end == info.size


def test_lf_without_final_newline_and_blank_lines_are_not_rows(storage, unique):
    path = upload_segment(storage, f"{unique}/lf.csv", "Email\nana@example.com\n\nben@example.com")
    _, rows = read_all(storage, path)
    assert [r.fields for r in rows] == [["ana@example.com"], ["ben@example.com"]]


def test_a_byte_range_starting_at_a_row_boundary_reads_exactly_its_rows(storage, unique):
    lines = ["Email"] + [f'"user{i}@example.com"' for i in range(10)]
    path = upload_segment(storage, f"{unique}/range.csv", "\n".join(lines) + "\n")
    info, rows = read_all(storage, path)
    middle = storage.segments.rows(path, rows[2].end, rows[6].end, first_row=4)
    assert [(r.number, r.fields[0]) for r in middle] == [(i + 1, f"user{i}@example.com") for i in range(3, 7)]


def test_a_file_larger_than_a_download_block_streams_row_by_row(storage, unique, monkeypatch):
    # A quoted field with a newline straddles the 4 MB block boundary somewhere in this file.
    row = '"{0}@example.com","multi\nline, {0}"\n'
    body = "".join(row.format(i) for i in range(150_000))
    path = upload_segment(storage, f"{unique}/big.csv", "Email,Note\n" + body)
    info, rows = read_all(storage, path)
    assert info.size > 4 * 1024 * 1024
    assert len(rows) == 150_000
    assert rows[-1].fields == ["149999@example.com", "multi\nline, 149999"]


def test_bytes_that_are_not_utf8_mark_only_their_row(storage, unique):
    data = b"Email,Name\nana@example.com,Ana\n" + b"ben@example.com,B\xe9n\n" + b"cy@example.com,Cy\n"
    path = upload_segment(storage, f"{unique}/latin1.csv", data)
    _, rows = read_all(storage, path)
    assert [r.utf8 for r in rows] == [True, False, True]


def test_missing_segment_empty_file_and_blank_header_are_clear_errors(storage, unique):
    with pytest.raises(SegmentError, match=f"segment {unique}/nope.csv was not found in container segments"):
        storage.segments.info(f"{unique}/nope.csv")
    upload_segment(storage, f"{unique}/empty.csv", "")
    with pytest.raises(SegmentError, match="is empty: expected a header row"):
        storage.segments.info(f"{unique}/empty.csv")
    upload_segment(storage, f"{unique}/blank.csv", ",,\nana@example.com,,\n")
    with pytest.raises(SegmentError, match="the header row is blank"):
        storage.segments.info(f"{unique}/blank.csv")


def test_an_unterminated_quote_is_a_clear_error(storage, unique):
    path = upload_segment(storage, f"{unique}/open-quote.csv", 'Email,Note\nana@example.com,"never closed\n')
    with pytest.raises(SegmentError, match="malformed CSV"):
        read_all(storage, path)


def test_columns_match_case_insensitively_and_a_missing_one_lists_what_exists():
    header = [" Email ", "CustomerId", "First Name"]
    assert resolve_columns("a.csv", header, {"email": "email", "customer_id": "CUSTOMERID"}) == {
        "email": 0, "customer_id": 1}
    with pytest.raises(SegmentError) as caught:
        resolve_columns("a.csv", header, {"email": "Email", "attribute:city": "City", "attribute:zip": "Zip"})
    assert str(caught.value) == ('segment a.csv: mapped column(s) "City", "Zip" not found; '
                                 'the file has " Email ", "CustomerId", "First Name"')
