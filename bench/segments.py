"""Generated segments for the benchmarks, streamed into Blob Storage (never whole in memory)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from shared.state import Storage

HEADER = "CustomerId,Email,FirstName,LastName,Country,City,PostalCode,EmailConsent\r\n"
INVALID_EVERY = 200  # 0.5% invalid emails
DUPLICATE_EVERY = 100  # 1% rows repeating an earlier person


def profile_lines(profiles: int, block_rows: int = 50_000) -> Iterator[bytes]:
    """CSV bytes of `profiles` rows, in blocks; the truth is derivable from the row number."""
    yield HEADER.encode()
    rows = []
    for i in range(profiles):
        person = i - 50 if i % DUPLICATE_EVERY == 99 else i
        email = f"person{person}@example.com" if person % INVALID_EVERY != 7 else f"person{person}.example.com"
        rows.append(f"C{person:09d},{email},Ana,Silva,PT,Lisboa,1100-148,yes\r\n")
        if len(rows) == block_rows:
            yield "".join(rows).encode()
            rows = []
    if rows:
        yield "".join(rows).encode()


def expected_counts(profiles: int) -> dict[str, int]:
    """Delivered, rejected and skipped rows of a `profile_lines` segment (email-keyed destinations)."""
    duplicates = sum(1 for i in range(profiles) if i % DUPLICATE_EVERY == 99)
    people = [i for i in range(profiles) if i % DUPLICATE_EVERY != 99]
    invalid = sum(1 for i in people if i % INVALID_EVERY == 7)
    invalid_duplicates = sum(1 for i in range(profiles) if i % DUPLICATE_EVERY == 99 and (i - 50) % INVALID_EVERY == 7)
    return {"delivered": len(people) - invalid, "rejected": invalid + invalid_duplicates,
            "skipped": duplicates - invalid_duplicates}


def upload(storage: Storage, path: str, profiles: int) -> None:
    storage.container("segments").upload_blob(path, profile_lines(profiles), overwrite=True, max_concurrency=2)


def upload_cdm(storage: Storage, folder: str, table: str, profiles: int, partitions: int = 4,
               quote_always: bool = True) -> str:
    """The rows of `profile_lines` as Customer Insights exports a table: headerless CSV
    partitions under a dated snapshot folder, every field quoted (CsvStyle.QuoteAlways)
    unless not `quote_always`, and `<folder>/model.json` naming the columns and listing
    the partitions by URL. Returns the export's segment entry (`<folder>/<table>`)."""
    container = storage.container("segments")
    paths = []
    for number in range(partitions):
        paths.append(f"{folder}/{table}/2026/11/24/0200/{table}_{number + 1}.csv")
        rows = profile_rows(profiles, profiles * number // partitions, profiles * (number + 1) // partitions,
                            quote_always)
        container.upload_blob(paths[-1], rows, overwrite=True, max_concurrency=2)
    model = cdm_model(folder, {table: HEADER.strip().split(",")}, {table: [f"{container.url}/{p}" for p in paths]})
    container.upload_blob(f"{folder}/model.json", model, overwrite=True)
    return f"{folder}/{table}"


def cdm_model(folder: str, columns: dict[str, list[str]], locations: dict[str, list[str]],
              format_settings: dict[str, Any] | None = None) -> bytes:
    """A model.json as Customer Insights writes one into `folder`: each table's attributes
    (`columns`) and its partitions' URLs (`locations`), headerless all-quoted CSV unless
    `format_settings` says otherwise."""
    settings = format_settings or {"$type": "CsvFormatSettings", "columnHeaders": False, "delimiter": ",",
                                   "quoteStyle": "QuoteStyle.Csv", "csvStyle": "CsvStyle.QuoteAlways",
                                   "encoding": "UTF-8"}
    entities = [{"$type": "LocalEntity", "name": table,
                 "attributes": [{"name": column, "dataType": "string"} for column in names],
                 "partitions": [{"name": url.rsplit("/", 1)[-1].removesuffix(".csv"), "location": url,
                                 "fileFormatSettings": settings} for url in locations.get(table, [])]}
                for table, names in columns.items()]
    return json.dumps({"name": folder.rsplit("/", 1)[-1], "version": "1.0",
                       "application": "Dynamics 365 Customer Insights", "entities": entities}).encode()


def profile_rows(profiles: int, first: int, end: int, quote_always: bool = False) -> Iterator[bytes]:
    """Rows [first, end) of `profile_lines(profiles)`, without its header; with every field
    quoted (CsvStyle.QuoteAlways) if `quote_always`."""
    at = 0
    for block in profile_lines(profiles):
        if at == 0 and block == HEADER.encode():
            continue
        lines = block.split(b"\r\n")[:-1]
        chosen = lines[max(0, first - at):max(0, end - at)]
        at += len(lines)
        if chosen:
            if quote_always:  # the generated fields hold no quote, comma or line break
                chosen = [b'"' + b'","'.join(line.split(b",")) + b'"' for line in chosen]
            yield b"\r\n".join(chosen) + b"\r\n"
