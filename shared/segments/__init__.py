"""Segments: reading segment files from the `segments` container, in blocks of whole rows.

A segment is a CSV file with a header row: UTF-8 with or without BOM, LF, CRLF or CR line
ends, RFC 4180 quoting (fields may hold commas, quotes and newlines); or the table folder
of a Customer Insights CDM export, whose headerless partition files its model.json lists
(`cdm`). Reading is
streamed, a megabyte at a time, and parsed in blocks (`parsing`); the plan reads each
file once (`SegmentReader.blocks`) and cuts it into chunks at row boundaries
(`offset_after`); plans reading the same file at once share its blocks (`sharing`).
"""

from .parsing import Block, FlatRows, SegmentError, offset_after
from .reader import DOWNLOAD_BYTES, SegmentFiles, SegmentInfo, SegmentReader, resolve_columns

__all__ = ["DOWNLOAD_BYTES", "Block", "FlatRows", "SegmentError", "SegmentFiles", "SegmentInfo", "SegmentReader",
           "offset_after", "resolve_columns"]
