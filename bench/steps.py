"""What each step of a plan costs a row, uncontended, with no storage or network:

    python -m bench.steps [--rows 200000] [--destination snapchat] [--repeats 5] [--quote-always]

The plan (`shared.engine.planning`) is the one step that reads every row, in one thread;
when a vendor's limit takes profiles faster than it reads them (Snapchat's 10 requests a
second of 50,000 hashes), its pace is the run's. This prints, as JSON, the CPU seconds
per million rows of each step on a generated segment (`bench.segments`), the median of
`--repeats`, so that a claim of what bounds that pace can be checked on any machine:

- `parse`: cutting the bytes into blocks of rows (`shared.segments.parsing.cut_blocks`);
- `emails`: normalising and checking the key column (`shared.profiles.email_keys`);
- `keys`: the destination's keys of the checked emails (Snapchat: SHA-256 hex);
- `classify`: the above two and the problem rows, as the plan calls them (`classify_block`);
- `dedupe`: first occurrences among the keys (`first_seen.FirstSeen`);
- `items`: the destination's items and batch lines, made by the plan's chunk writer
  (`chunking.ChunkWriter`: `Destination.items`, `encode_batch`, `batches.batch_line`);
- `compress`: the batch lines zstd-compressed as stored (`shared.state.items`).

`--quote-always` writes every field quoted, as Customer Insights exports them.

`plan_steps` is parse + classify + dedupe + items + compress: what a plan does per row
(the compression in its writes thread, the rest in its own), before storage calls and
the interpreter's memory management between blocks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from types import SimpleNamespace
from typing import Any

import zstandard

from destinations import SPECS, destination_class
from shared.config import parse_connection, parse_export
from shared.engine.chunking import ChunkWriter
from shared.engine.classify import classify_block
from shared.engine.first_seen import FirstSeen
from shared.profiles import email_keys
from shared.segments import resolve_columns
from shared.segments.parsing import cut_blocks
from shared.state.items import COMPRESSION

from .scenarios import bench_exports
from .segments import HEADER, profile_rows

SEGMENT = "bench.csv"


def measure(rows: int, destination: str, repeats: int, quote_always: bool = False) -> dict[str, Any]:
    data = b"".join(profile_rows(rows, 0, rows, quote_always))
    spec = SPECS[destination]
    settings = {"rest_endpoint": "http://127.0.0.1:1"} if destination == "braze" else {}  # nothing is sent
    connection = parse_connection({"name": "c", "display_name": "c", "type": destination, "secret_name": "c",
                                   "settings": settings}, SPECS, allow_local=True)
    (document,) = bench_exports(SEGMENT, (destination,))  # the export the benchmarks run
    export = parse_export({**document, "connection": "c"}, {"c": connection}, SPECS)
    header = HEADER.strip().split(",")
    columns = resolve_columns(SEGMENT, header, export.matching.columns())
    cls = destination_class(destination)
    figures: dict[str, list[float]] = {}
    for _ in range(repeats):
        prepared = cls(connection, export, columns)  # no credentials: it prepares items, sends nothing
        for step, seconds in _once(data, prepared, columns[spec.identifier], len(header), rows).items():
            figures.setdefault(step, []).append(seconds)
    per_million = {step: round(statistics.median(seconds) * 1_000_000 / rows, 3) for step, seconds in figures.items()}
    per_million["plan_steps"] = round(sum(per_million[step] for step in
                                          ("parse", "classify", "dedupe", "items", "compress")), 3)
    return {"destination": destination, "rows": rows, "repeats": repeats, "quote_always": quote_always,
            "batch_size": connection.settings["batch_size"], "cpu_s_per_million_rows": per_million,
            "rows_per_s_one_thread": round(1_000_000 / per_million["plan_steps"])}


def _once(data: bytes, destination, key_index: int, width: int, rows: int) -> dict[str, float]:
    """CPU seconds of each step over the whole of `data`, one step after another."""
    cls, identifier = type(destination), destination.SPEC.identifier
    seconds: dict[str, float] = {}
    started = time.process_time()

    def lap(step: str) -> None:
        nonlocal started
        now = time.process_time()
        seconds[step] = now - started
        started = now

    blocks = list(cut_blocks(SEGMENT, iter([data]), len(HEADER), 1))
    lap("parse")
    if identifier == "email":
        values = [[row[key_index] for row in block.rows] for block in blocks]
        started = time.process_time()
        emails = [email_keys(column) for column in values]
        lap("emails")
        for column, checked in zip(values, emails, strict=True):
            cls.keys_of_emails(column, *checked)
        lap("keys")
    started = time.process_time()
    classified = [classify_block(block, width, key_index, identifier, cls) for block in blocks]
    lap("classify")
    first_seen = FirstSeen(rows)
    firsts = [first_seen.first(keys) for keys, _ in classified]
    lap("dedupe")
    lines = _batch_lines(blocks, classified, firsts, destination, key_index, width)
    lap("items")
    compressor = zstandard.ZstdCompressor(compression_params=COMPRESSION)
    for line in lines:
        compressor.compress("".join(line).encode())
    lap("compress")
    return seconds


def _batch_lines(blocks, classified, firsts, destination, key_index: int, width: int) -> list[list[str]]:
    """The batch lines of the rows, made by the plan's own chunk writer (one chunk), kept
    in memory where the plan hands them to a compressed blob."""
    lines: list[list[str]] = []
    runs = SimpleNamespace(items_writer=lambda *_: SimpleNamespace(write=lines.append, close=lambda: None),
                           write_rejected=lambda *_: None, rejected_path=lambda *_: "")
    writes = SimpleNamespace(submit=lambda write, *args: write(*args))
    plan = {"export": {"name": "e"}, "run_id": "r", "chunks": []}
    chunk = ChunkWriter(plan, SEGMENT, len(HEADER), 1, destination, SimpleNamespace(runs=runs), writes)
    for block, (keys, problems), block_firsts in zip(blocks, classified, firsts, strict=True):
        chunk.take(block, 0, len(block.rows), width, key_index, keys, block_firsts, problems)
    chunk.close(len(HEADER) + sum(block.end - block.start for block in blocks))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--destination", choices=sorted(SPECS), default="snapchat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quote-always", action="store_true", help="every field quoted, as Customer Insights writes")
    args = parser.parse_args()
    print(json.dumps(measure(args.rows, args.destination, args.repeats, args.quote_always), indent=2))


if __name__ == "__main__":
    main()
