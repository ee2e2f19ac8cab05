"""Connection and export documents: validation that names object, field and problem, all at once."""

import copy

import pytest

from destinations import SPECS
from shared.config import DefinitionError, parse_connection, parse_definitions, parse_export

CONSENT = {"accepted_by": "ana@contoso.com", "accepted_at": "2026-11-01T09:30:00Z"}
BRAZE = {"name": "braze-eu", "type": "braze", "display_name": "Braze EU", "secret_name": "braze-eu-key",
         "consent": CONSENT, "settings": {"rest_endpoint": "https://rest.fra-01.braze.eu"}}
EXPORT = {"name": "vip-braze", "display_name": "VIP to Braze", "connection": "braze-eu", "segments": ["vip/all.csv"],
          "target": {"segment_id": "vip"}, "matching": {"email": "Email", "customer_id": "CustomerId"}}


def problems(error: DefinitionError) -> list[str]:
    return [str(p) for p in error.problems]


def test_a_complete_definition_parses_with_defaults_filled_in():
    definitions = parse_definitions({"connections": [BRAZE], "exports": [EXPORT]}, SPECS)
    connection = definitions.connections["braze-eu"]
    assert connection.usable_by == ("admin",)
    assert connection.settings["batch_size"] == 75 and connection.settings["requests_per_second"] == 1000
    export = definitions.exports["vip-braze"]
    assert export.target["membership_attribute"] == "segment_vip"
    assert export.mode == "upsert" and export.enabled is True


def test_every_problem_of_a_document_is_reported_at_once_naming_object_and_field():
    bad = copy.deepcopy(BRAZE)
    bad.update(name="Braze EU", usable_by=["owner"], secret_name="bad name!", extra=1)
    bad["settings"] = {"rest_endpoint": "https://evil.example.com", "batch_size": 500}
    with pytest.raises(DefinitionError) as caught:
        parse_connection(bad, SPECS)
    found = problems(caught.value)
    assert any(p.startswith('connection "Braze EU": name: must be 1-63 lowercase') for p in found)
    assert any("usable_by: must be a non-empty list of roles from admin, contributor" in p for p in found)
    assert any("secret_name: must be a Key Vault secret name" in p for p in found)
    assert any("extra: is not a known field" in p for p in found)
    assert any("settings.rest_endpoint: host 'evil.example.com' is not one of the vendor's hosts" in p for p in found)
    assert any("settings.batch_size: must be at most 75, got 500" in p for p in found)
    assert len(found) == 6


def test_a_vendor_endpoint_must_be_https_on_the_vendors_host():
    document = {**BRAZE, "settings": {"rest_endpoint": "http://rest.fra-01.braze.eu"}}
    with pytest.raises(DefinitionError, match="must be an https:// URL of the vendor"):
        parse_connection(document, SPECS)


def test_a_loopback_endpoint_needs_local_endpoints_explicitly_allowed():
    document = {**BRAZE, "settings": {"rest_endpoint": "http://127.0.0.1:8123"}}
    with pytest.raises(DefinitionError, match="ALLOW_LOCAL_ENDPOINTS"):
        parse_connection(document, SPECS)
    assert parse_connection(document, SPECS, allow_local=True).settings["rest_endpoint"] == "http://127.0.0.1:8123"


def test_consent_needs_who_and_a_real_timestamp():
    document = {**BRAZE, "consent": {"accepted_by": "", "accepted_at": "yesterday"}}
    with pytest.raises(DefinitionError) as caught:
        parse_connection(document, SPECS)
    found = problems(caught.value)
    assert any("consent.accepted_by: must be a non-empty string" in p for p in found)
    assert any("consent.accepted_at: must be an ISO 8601 date and time" in p for p in found)


def test_braze_export_requires_the_customer_id_column_and_a_segment():
    connection = parse_connection(BRAZE, SPECS)
    document = {**EXPORT, "matching": {"email": "Email"}, "target": {}}
    with pytest.raises(DefinitionError) as caught:
        parse_export(document, {"braze-eu": connection}, SPECS)
    found = problems(caught.value)
    assert 'export "vip-braze": matching.customer_id: is required for Braze: name the customer id column' in found
    assert 'export "vip-braze": target.segment_id: is required' in found


def test_export_naming_an_unknown_connection_lists_the_known_ones():
    with pytest.raises(DefinitionError, match='names an unknown connection "nope" \\(known: braze-eu\\)'):
        parse_export({**EXPORT, "connection": "nope"}, {"braze-eu": parse_connection(BRAZE, SPECS)}, SPECS)


def test_segments_must_be_relative_blob_paths():
    connection = parse_connection(BRAZE, SPECS)
    with pytest.raises(DefinitionError) as caught:
        parse_export({**EXPORT, "segments": ["/abs.csv", "a/../b.csv", ""]}, {"braze-eu": connection}, SPECS)
    assert len(caught.value.problems) == 3


def test_snapchat_takes_no_attributes_and_mirror_mode_is_refused_clearly():
    snapchat = {"name": "snap", "type": "snapchat", "display_name": "Snap", "secret_name": "snap", "consent": CONSENT}
    connection = parse_connection(snapchat, SPECS)
    document = {"name": "vip-snap", "display_name": "VIP", "connection": "snap", "segments": ["a.csv"],
                "target": {"audience_id": "123"}, "matching": {"email": "Email", "attributes": {"first": "First"}},
                "mode": "mirror"}
    with pytest.raises(DefinitionError) as caught:
        parse_export(document, {"snap": connection}, SPECS)
    found = problems(caught.value)
    assert any("matching.attributes: Snapchat takes no attributes" in p for p in found)
    assert any("mode: mirror mode" in p and "not available yet" in p for p in found)


def test_braze_attribute_mapping_cannot_overwrite_identifiers():
    connection = parse_connection(BRAZE, SPECS)
    document = {**EXPORT, "matching": {**EXPORT["matching"], "attributes": {"external_id": "Other", "$x": "Y"}}}
    with pytest.raises(DefinitionError) as caught:
        parse_export(document, {"braze-eu": connection}, SPECS)
    assert len(caught.value.problems) == 2


def test_a_definitions_file_reports_problems_of_all_documents_and_duplicates():
    document = {"connections": [BRAZE, BRAZE, {"name": "x", "type": "fax"}],
                "exports": [EXPORT, {**EXPORT, "name": "other", "connection": "missing"}], "extra": True}
    with pytest.raises(DefinitionError) as caught:
        parse_definitions(document, SPECS)
    found = problems(caught.value)
    assert 'connection "braze-eu": name: is defined twice' in found
    assert any(p.startswith('connection "x": type: must be one of braze, campaign_monitor, omnisend, snapchat')
               for p in found)
    assert any(p.startswith('export "other": connection: names an unknown connection "missing"') for p in found)
    assert "definitions: extra: is not a known field (expected connections, exports)" in found


def test_the_shipped_example_is_valid():
    import json
    from pathlib import Path

    example = json.loads((Path(__file__).resolve().parents[2] / "examples" / "exports.json").read_text())
    definitions = parse_definitions(example, SPECS)
    assert {c.type for c in definitions.connections.values()} == set(SPECS)
