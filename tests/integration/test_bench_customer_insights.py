"""`python -m bench.customer_insights`: the benchmarks' profiles as a Customer Insights CDM
folder, run through the exports with every count checked (its own Azurite and stand-ins)."""

from bench.customer_insights import measure
from shared.segments.parsing import FlatRows
from shared.state import Storage


def test_the_cdm_benchmark_reads_every_partition_and_checks_every_count():
    figures = measure(8_000, partitions=3, destinations=("snapchat", "campaign_monitor"))
    assert figures["quote_always"] and set(figures["destinations"]) == {"snapchat", "campaign_monitor"}
    for destination in figures["destinations"].values():
        assert destination["partitions_read"] == [2666, 2667, 2667]
    assert figures["cpu_s"] > 0 and figures["peak_rss_mb"] > 0


def test_its_partitions_are_headerless_and_quote_every_field(storage: Storage, unique):
    from bench.segments import upload_cdm

    table = upload_cdm(storage, f"{unique}/BlobExport", "Profiles", 1_000, partitions=2)
    files = storage.segments.files(table)
    assert [info.header_row for info in files.files] == [False, False]
    first = next(storage.segments.blocks(files.files[0].path, 0, files.files[0].size))
    assert first.data.startswith(b'"C000000000","person0@example.com",') and isinstance(first.rows, FlatRows)
    assert sum(len(block.rows) for i in files.files for block in storage.segments.blocks(i.path, 0, i.size)) == 1_000
