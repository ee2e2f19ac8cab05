"""Generated segments for the benchmarks, streamed into Blob Storage (never whole in memory)."""

from __future__ import annotations

from collections.abc import Iterator

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
