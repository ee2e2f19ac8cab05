"""Segments exported by Customer Insights as CDM folders (Azurite): a table named by its
folder, read from the headerless partitions its model.json lists, newest complete
snapshot first; every problem of the folder a clear error naming it."""

from __future__ import annotations

import csv
import io
import json

import pytest
from azure.storage.blob import ContainerClient

from runner import run_export
from sandbox.bundle import LIST_ID
from shared.engine import Services, check_export
from shared.segments import SegmentError, resolve_columns
from shared.segments.cdm import _blob_path
from tests.support import assert_accounted, connection_of, upload_cdm_table, upload_segment

COLUMNS = ["CustomerId", "Email", "FirstName"]


def _export(unique: str, segment: str) -> dict:
    return {"name": f"cdm-{unique}", "display_name": "CDM", "connection": "sandbox-campaign-monitor",
            "segments": [segment], "target": {"list_id": LIST_ID},
            "matching": {"email": "Email", "attributes": {"name": "FirstName"}}}


def test_a_customer_insights_table_is_read_from_the_partitions_of_its_newest_snapshot(
        app_env, stand_ins, storage, unique):
    segment = upload_cdm_table(storage, f"{unique}/CustomerInsights_1/BlobExport", "HighValue", COLUMNS, {
        "2026/11/23/0200": ["O1,old@example.com,Old\n"],  # an earlier export: not this segment any more
        "2026/11/24/0200": [
            '\ufeffC1,ana@example.com,"Ana, ""the first""\r\nsecond line"\r\nC2,ben@example.com,Ben\r\n',
            "C3,not-an-email,Cy\nC4,BEN@example.com,Ben again\nC5,dora@example.com\n",  # 2 invalid, 3 repeats
            "",  # a partition with no rows
        ]}, other_tables=("Contacts",))
    report = run_export(_export(unique, segment), connection_of(stand_ins, "campaign_monitor"))

    assert report["status"] == "succeeded", report["error"]
    assert stand_ins.campaign_monitor.active(LIST_ID) == {"ana@example.com", "ben@example.com"}
    assert stand_ins.campaign_monitor.lists[LIST_ID]["ana@example.com"]["Name"] == 'Ana, "the first"\r\nsecond line'
    assert_accounted(report)
    destination = report["destination"]
    assert (destination["input_rows"], destination["delivered"], destination["rejected"],
            destination["skipped"]) == (5, 2, 2, 1)
    partitions = [f"{unique}/CustomerInsights_1/BlobExport/HighValue/2026/11/24/0200/HighValue_{n}.csv"
                  for n in (1, 2, 3)]
    model = f"{unique}/CustomerInsights_1/BlobExport/model.json"
    assert [(s["path"], s["rows"], s["model"]) for s in report["segments"]] == [
        (partitions[0], 2, model), (partitions[1], 3, model), (partitions[2], 0, model)]
    # No header row: a partition's first line is its row 1.
    text = storage.container("export-runs").download_blob(destination["rejected_rows_file"]).readall().decode()
    assert [(r["segment"], r["row"], r["reason"]) for r in csv.DictReader(io.StringIO(text))] == [
        (partitions[1], "1", "invalid email: no @"), (partitions[1], "3", "row has 2 fields, the header has 3")]
    assert f"segment {partitions[2]} holds no data rows: check that upstream wrote it completely" in \
        destination["warnings"]


def test_a_snapshot_missing_a_partition_is_passed_over_for_the_newest_complete_one(
        app_env, stand_ins, storage, unique):
    segment = upload_cdm_table(storage, f"{unique}/BlobExport", "Vip", COLUMNS, {
        "2026/11/23/0200": ["V1,vera@example.com,Vera\n"],
        "2026/11/24/0200": ["V2,walt@example.com,Walt\n", None],  # its second file never arrived
    })
    report = run_export(_export(unique, segment), connection_of(stand_ins, "campaign_monitor"))

    assert report["status"] == "succeeded", report["error"]
    assert stand_ins.campaign_monitor.active(LIST_ID) == {"vera@example.com"}
    assert [s["path"] for s in report["segments"]] == [f"{unique}/BlobExport/Vip/2026/11/23/0200/Vip_1.csv"]
    (warning,) = [w for w in report["destination"]["warnings"] if "passed over" in w]
    assert warning == (f"segment {segment} (table 'Vip' of {unique}/BlobExport/model.json): snapshot "
                       f"{unique}/BlobExport/Vip/2026/11/24/0200 was passed over, 1 of its 2 partition files "
                       f"missing (first: {unique}/BlobExport/Vip/2026/11/24/0200/Vip_2.csv)")


def test_partitions_written_with_a_header_row_are_read_by_their_header(storage, unique):
    settings = {"$type": "CsvFormatSettings", "columnHeaders": True}
    segment = upload_cdm_table(storage, f"{unique}/BlobExport", "Vip", COLUMNS,
                               {"2026/11/24/0200": ["email,customerid\nana@example.com,C1\n"]},
                               format_settings=settings)
    (info,) = storage.segments.files(segment).files
    assert info.header == ["email", "customerid"] and info.header_row
    assert resolve_columns(info.path, info.header, {"email": "Email"}) == {"email": 0}


def test_the_check_names_the_table_its_snapshot_and_what_was_passed_over(app_env, stand_ins, storage, unique):
    segment = upload_cdm_table(storage, f"{unique}/BlobExport", "Vip", COLUMNS, {
        "2026/11/23/0200": ["V1,vera@example.com,Vera\n"], "2026/11/24/0200": [None]})
    result = check_export(_export(unique, segment), connection_of(stand_ins, "campaign_monitor"), Services.current())
    (check,) = [c for c in result["checks"] if c["check"] == f"segment {segment}"]
    assert check["ok"] and result["ok"]
    assert check["detail"].startswith(f"table of {unique}/BlobExport/model.json: 1 partition file(s) in "
                                      f"{unique}/BlobExport/Vip/2026/11/23/0200; 25 bytes; mapped columns found")
    assert "2026/11/24/0200 was passed over" in check["detail"]


def _model(storage, folder: str, model) -> None:
    data = model if isinstance(model, bytes) else json.dumps(model).encode()
    storage.container("segments").upload_blob(f"{folder}/model.json", data, overwrite=True)


def _entity(location: str, **settings) -> dict:
    return {"$type": "LocalEntity", "name": "Vip", "attributes": [{"name": "Email", "dataType": "string"}],
            "partitions": [{"name": "Vip_1", "location": location,
                            **({"fileFormatSettings": settings} if settings else {})}]}


def test_each_problem_of_a_cdm_folder_is_a_clear_error_naming_it(storage, unique):
    reader, folder = storage.segments, f"{unique}/BlobExport"
    where = f"segment {folder}/Vip (table 'Vip' of {folder}/model.json)"

    def error_of(model) -> str:
        _model(storage, folder, model)
        with pytest.raises(SegmentError) as raised:
            reader.files(f"{folder}/Vip")
        return str(raised.value)

    with pytest.raises(SegmentError) as raised:
        reader.files(f"{unique}/nowhere/Vip")
    assert str(raised.value) == (f"segment {unique}/nowhere/Vip was not found in container segments (nor is it the "
                                 "table folder of a Customer Insights export: no model.json beside it)")
    assert error_of(b"{not json").startswith(f"{folder}/model.json is not valid JSON: ")
    assert error_of({"name": "m"}) == f"{folder}/model.json is not a CDM model.json: it has no list of entities"
    assert error_of({"entities": [{**_entity("x.csv"), "name": "Other"}]}) == (
        f"{where}: {folder}/model.json describes no table 'Vip'; its tables: 'Other'")
    assert error_of({"entities": [{**_entity("x.csv"), "partitions": []}]}) == (
        f"{where}: model.json lists no partition file for the table: has Customer Insights finished its first "
        "export of it?")
    assert error_of({"entities": [_entity("x.csv", delimiter=";", encoding="UTF-16")]}) == (
        f"{where}: partition {folder}/x.csv: unsupported delimiter ';' (only ',' is read), encoding UTF-16 "
        "(only UTF-8 is read)")
    elsewhere = "https://otheraccount.blob.core.windows.net/segments/Vip/Vip_1.csv"
    assert error_of({"entities": [_entity(elsewhere)]}) == (
        f"{where}: partitions[0]: its file {elsewhere} is not in this storage account's segments container "
        f"(account {storage.container('segments').account_name}): have Customer Insights export into it")
    assert error_of({"entities": [_entity("../../../x.csv")]}) == (
        f"{where}: partitions[0]: its location ../../../x.csv is outside the segments container")
    assert error_of({"entities": [_entity("Vip/Vip_1.csv")]}) == (
        f"{where}: no snapshot of the table has all its partition files; snapshot {folder}/Vip was passed over, "
        f"1 of its 1 partition files missing (first: {folder}/Vip/Vip_1.csv)")


def test_a_mapped_column_the_table_lacks_lists_its_attributes(storage, unique):
    segment = upload_cdm_table(storage, f"{unique}/BlobExport", "Vip", COLUMNS, {"2026/11/24/0200": ["C1,a@b.co,A\n"]})
    (info,) = storage.segments.files(segment).files
    with pytest.raises(SegmentError, match='mapped column\\(s\\) "Mail" not found; the file has "CustomerId", '
                                           '"Email", "FirstName"'):
        resolve_columns(info.path, info.header, {"email": "Mail"})


def test_a_relative_partition_location_is_read_from_the_models_folder(storage, unique):
    folder = f"{unique}/BlobExport"
    upload_segment(storage, f"{folder}/Vip/2026/Vip_1.csv", "ana@example.com\n")
    _model(storage, folder, {"entities": [_entity("Vip/2026/Vip_1.csv")]})
    (info,) = storage.segments.files(f"{folder}/Vip").files
    assert (info.path, info.header, info.data_start, info.header_row) == (
        f"{folder}/Vip/2026/Vip_1.csv", ["Email"], 0, False)


@pytest.mark.parametrize("url, path", [
    ("https://acct.blob.core.windows.net/segments/ci/Vip/2026/Vip_1.csv", "ci/Vip/2026/Vip_1.csv"),
    ("https://acct.dfs.core.windows.net/segments/ci/Vip%202/Vip_1.csv", "ci/Vip 2/Vip_1.csv"),
    ("http://127.0.0.1:10000/acct/segments/ci/Vip_1.csv", "ci/Vip_1.csv"),
])
def test_a_partition_url_maps_to_its_blob_in_the_segments_container(url, path):
    container = ContainerClient.from_container_url("https://acct.blob.core.windows.net/segments")
    assert _blob_path(container, url, "ci", "where") == path


def test_resuming_a_run_whose_partition_was_removed_since_is_refused(app_env, stand_ins, storage, unique):
    segment = upload_cdm_table(storage, f"{unique}/BlobExport", "Vip", COLUMNS, {
        "2026/11/24/0200": ["V1,vera@example.com,Vera\n", "V2,walt@example.com,Walt\n"]})
    first = run_export(_export(unique, segment), connection_of(stand_ins, "campaign_monitor"))
    assert first["destination"]["delivered"] == 2
    removed = first["segments"][1]["path"]
    storage.container("segments").delete_blob(removed)  # the snapshot cleaned up meanwhile
    again = run_export(_export(unique, segment), connection_of(stand_ins, "campaign_monitor"), resume=first["run_id"])
    assert again["status"] == "failed"
    assert again["error"] == (f"cannot resume run {first['run_id']}: segment {removed}: it was removed; "
                              "start a new run instead")
    assert again["destination"]["delivered"] == 2
    assert_accounted(again)


@pytest.mark.parametrize("url", ["https://acct.blob.core.windows.net/segments/../exports/connections.json",
                                 "https://acct.blob.core.windows.net/segments/ci/./Vip_1.csv", "../exports/a.json"])
def test_a_partition_location_cannot_reach_outside_the_segments_container(url):
    container = ContainerClient.from_container_url("https://acct.blob.core.windows.net/segments")
    with pytest.raises(SegmentError, match="is outside the segments container"):
        _blob_path(container, url, "ci", "where")


def test_a_table_whose_partitions_are_all_empty_stops_the_run_before_anything_is_sent(
        app_env, stand_ins, storage, unique):
    segment = upload_cdm_table(storage, f"{unique}/BlobExport", "Vip", COLUMNS, {"2026/11/24/0200": ["", ""]})
    report = run_export(_export(unique, segment), connection_of(stand_ins, "campaign_monitor"))
    assert report["status"] == "failed"
    assert report["error"] == f"the export's segments hold no data rows: {segment}"
    assert report["destination"]["input_rows"] == 0
