"""What each step of a plan costs a row, uncontended, with no storage or network:

    python -m bench.steps [--rows 200000] [--destination snapchat] [--repeats 5]

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
- `items`: the destination's items and batch lines (`Destination.items`, `encode_batch`,
  `batches.batch_line`);
- `compress`: the batch lines zstd-compressed as stored (`shared.state.items`).

`plan_steps` is parse + classify + dedupe + items + compress: what one thread must do per
row, before storage calls and the interpreter's memory management between blocks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import zstandard

from destinations import SPECS, destination_class
from destinations.rows import Rows
from shared.config import parse_connection, parse_export
from shared.engine.batches import batch_line
from shared.engine.classify import classify_block
from shared.engine.first_seen import FirstSeen
from shared.segments.parsing import cut_blocks
from shared.state.items import COMPRESSION

from .segments import HEADER, profile_lines

# The generated segment's columns, and each vendor's matching as the benchmarks' exports have it.
COLUMNS = HEADER.strip().split(",")
MATCHING = {
    "snapchat": {"email": "Email"},
    "braze": {"email": "Email", "customer_id": "CustomerId",
              "attributes": {"first_name": "FirstName", "last_name": "LastName", "country": "Country",
                             "home_city": "City"}},
    "omnisend": {"email": "Email", "consent": "EmailConsent",
                 "attributes": {"first_name": "FirstName", "last_name": "LastName", "country_code": "Country",
                                "city": "City", "postal_code": "PostalCode"}},
    "campaign_monitor": {"email": "Email", "attributes": {"name": "FirstName", "City": "City"}},
}
TARGETS = {"snapchat": {"audience_id": "a"}, "braze": {"segment_id": "s"}, "omnisend": {"tag": "t"},
           "campaign_monitor": {"list_id": "l"}}


def measure(rows: int, destination: str, repeats: int) -> dict[str, Any]:
    data = b"".join(profile_lines(rows))[len(HEADER):]
    spec = SPECS[destination]
    settings = {"rest_endpoint": "http://127.0.0.1:1"} if destination == "braze" else {}  # nothing is sent
    connection = parse_connection({"name": "c", "display_name": "c", "type": destination, "secret_name": "c",
                                   "settings": settings}, SPECS, allow_local=True)
    export = parse_export({"name": "e", "display_name": "e", "connection": "c", "segments": ["bench.csv"],
                           "target": TARGETS[destination], "matching": MATCHING[destination]}, {"c": connection}, SPECS)
    columns = {field: COLUMNS.index(column) for field, column in export.matching.columns().items()}
    cls = destination_class(destination)
    identifier, key_index, width = spec.identifier, columns[spec.identifier], len(COLUMNS)
    batch = connection.settings["batch_size"]
    sender = cls(connection, export, columns)
    figures: dict[str, list[float]] = {}
    for _ in range(repeats):
        for step, seconds in _once(data, cls, sender, identifier, key_index, width, batch, rows).items():
            figures.setdefault(step, []).append(seconds)
    per_million = {step: round(statistics.median(seconds) * 1_000_000 / rows, 3) for step, seconds in figures.items()}
    per_million["plan_steps"] = round(sum(per_million[step] for step in
                                          ("parse", "classify", "dedupe", "items", "compress")), 3)
    return {"destination": destination, "rows": rows, "repeats": repeats, "batch_size": batch,
            "cpu_s_per_million_rows": per_million,
            "rows_per_s_one_thread": round(1_000_000 / per_million["plan_steps"])}


def _once(data: bytes, cls, sender, identifier: str, key_index: int, width: int, batch: int,
          rows: int) -> dict[str, float]:
    """CPU seconds of each step over the whole of `data`, one step after another."""
    seconds: dict[str, float] = {}
    started = time.process_time()

    def lap(step: str) -> None:
        nonlocal started
        now = time.process_time()
        seconds[step] = now - started
        started = now

    blocks = list(cut_blocks("bench.csv", iter([data]), len(HEADER), 1))
    lap("parse")
    if identifier == "email":
        emails = [Rows(block.rows, width=width).checked_emails(key_index) for block in blocks]
        lap("emails")
        values = [Rows(block.rows, width=width).values(key_index) for block in blocks]
        started = time.process_time()
        for value, checked in zip(values, emails, strict=True):
            cls.keys_of_emails(value, *checked)
        lap("keys")
    for block in blocks:  # a fresh memo: classify works the columns out again, as a plan does
        block.derived.clear()
    started = time.process_time()
    classified = [classify_block(block, width, key_index, identifier, cls) for block in blocks]
    lap("classify")
    first_seen = FirstSeen(rows)
    firsts = [first_seen.first(keys) for keys, _ in classified]
    lap("dedupe")
    lines = _batch_lines(blocks, classified, firsts, sender, key_index, width, batch)
    lap("items")
    compressor = zstandard.ZstdCompressor(compression_params=COMPRESSION)
    for line in lines:
        compressor.compress("".join(line).encode())
    lap("compress")
    return seconds


def _batch_lines(blocks, classified, firsts, sender, key_index: int, width: int, batch: int) -> list[list[str]]:
    """The batch lines of every first occurrence, `batch` items a line, as a chunk writes them."""
    numbers: list[int] = []
    keys: list[str] = []
    identifiers: list[str] = []
    items: list[str] = []
    lines = []
    for block, (block_keys, _), block_firsts in zip(blocks, classified, firsts, strict=True):
        sendable = [index for index, first in enumerate(block_firsts) if first]
        chosen = Rows(block.rows, sendable, width, block.derived, block.derived_lock)
        chosen_keys, chosen_identifiers = chosen.pick(block_keys), chosen.values(key_index)
        made, refused = sender.items(chosen_keys, chosen)
        kept = [at for at in range(len(sendable)) if at not in refused]  # a field the vendor would refuse
        numbers += [block.first_row + sendable[at] for at in kept]
        keys += [chosen_keys[at] for at in kept]
        identifiers += [chosen_identifiers[at] for at in kept]
        items += [made[at] for at in kept]
        while len(items) >= batch or (items and block is blocks[-1]):
            size = min(batch, len(items))
            lines.append(batch_line(numbers[:size], keys[:size], identifiers[:size],
                                    sender.encode_batch(items[:size]), sender.ITEMS_ARE_KEYS))
            del numbers[:size], keys[:size], identifiers[:size], items[:size]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--destination", choices=sorted(SPECS), default="snapchat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.rows, args.destination, args.repeats), indent=2))


if __name__ == "__main__":
    main()
