"""Items are written a block at a time, column by column: the same JSON as row by row.

The plan calls `items()` with all the sendable rows of a block; rows whose optional
fields differ go through different templates. These tests protect that a row's item
does not depend on its neighbours: no attribute leaks from one row to another, an empty
one is left out, a refused row refuses only itself.
"""

import json
import random
import threading

import pytest

from destinations.base import Template
from destinations.rows import Rows

VALUES = ["", " ", "Ana", " Ana ", "Zoë", 'say "hi"', "a,b", "{brace}", "x" * 251, "x" * 250, "\\back",
          "日本", "tab\there", "yes", "No", " YES ", "opt-in"]
EMAILS = ["ana@example.com", " Ana@Example.COM ", "", "not-an-email", "x@y.pt", "zoë@example.com"]

CASES = {
    "campaign_monitor": ({"list_id": "L1"}, ["Email", "Id", "Name", "Tier", "City", "Consent"],
                         {"email": "Email", "consent": "Consent",
                          "attributes": {"name": "Name", "tier": "Tier", "city": "City"}}),
    "omnisend": ({"tag": 'v"ip'}, ["Email", "Id", "First", "Tier", "City", "Consent"],
                 {"email": "Email", "consent": "Consent",
                  "attributes": {"first_name": "First", "tier": "Tier", "city": "City"}}),
    "braze": ({"segment_id": "vip"}, ["Email", "Id", "First", "Tier", "City", "Consent"],
              {"email": "Email", "customer_id": "Id", "attributes": {"first_name": "First", "tier": "Tier"}}),
    "snapchat": ({"audience_id": "a1"}, ["Email", "Id", "First", "Tier", "City", "Consent"], {"email": "Email"}),
}


def varied_rows(count: int) -> list[list[str]]:
    chooser = random.Random(7)
    return [[chooser.choice(EMAILS), f"C{n}"] + [chooser.choice(VALUES) for _ in range(4)] for n in range(count)]


@pytest.mark.parametrize("type_", sorted(CASES))
def test_a_block_of_rows_gives_each_row_the_item_it_has_alone(build, type_):
    target, header, matching = CASES[type_]
    destination = build(type_, target, matching, header)
    rows = varied_rows(300)
    keys = [row[1] if type_ == "braze" else row[0].strip().lower() for row in rows]
    items, refused = destination.items(keys, Rows(rows))
    assert len(items) == len(rows)
    for index, (key, row) in enumerate(zip(keys, rows, strict=True)):
        alone, refused_alone = destination.items([key], Rows([row]))
        assert (items[index], refused.get(index)) == (alone[0], refused_alone.get(0)), row
        assert (items[index] is None) == (index in refused)
        if items[index] is not None and type_ != "snapchat":
            json.loads(items[index])  # every item is JSON on its own


def test_exports_sharing_a_block_give_each_picked_row_the_item_it_has_alone(build):
    # The plans of several exports of one segment share its blocks and the columns worked
    # out from them (trimmed, JSON, checked emails): each export picks different rows
    # (its own duplicates and refusals left out), and none may see another's rows.
    rows = varied_rows(400) + [["a@example.com", "C", "Ana"]]  # a row of the wrong width: no values
    memo, lock = {}, threading.RLock()
    chooser = random.Random(11)
    for type_ in sorted(CASES) * 2:  # the second round finds every column worked out
        target, header, matching = CASES[type_]
        destination = build(type_, target, matching, header)
        picked = sorted(chooser.sample(range(400), 250))
        keys = [rows[index][1] if type_ == "braze" else rows[index][0].strip().lower() for index in picked]
        items, refused = destination.items(keys, Rows(rows, picked, len(header), memo, lock))
        for position, (key, index) in enumerate(zip(keys, picked, strict=True)):
            alone, refused_alone = destination.items([key], Rows([rows[index]]))
            assert (items[position], refused.get(position)) == (alone[0], refused_alone.get(0)), rows[index]
    assert any(kind == "json" for kind, _, _ in memo) and any(kind == "emails" for kind, _, _ in memo)


def test_an_empty_attribute_is_left_out_of_its_row_only(build):
    target, header, matching = CASES["omnisend"]
    omnisend = build("omnisend", target, matching, header)
    rows = [["a@example.com", "1", "Ana", "", "Porto", "yes"], ["b@example.com", "2", "", "gold", " ", "no"]]
    items, refused = omnisend.items(["a@example.com", "b@example.com"], Rows(rows))
    first, second = map(json.loads, items)
    assert refused == {}
    assert (first["firstName"], first["city"], first["tags"]) == ("Ana", "Porto", ['v"ip'])
    assert "customProperties" not in first
    assert "firstName" not in second and "city" not in second and second["customProperties"] == {"tier": "gold"}
    assert first["identifiers"][0]["channels"]["email"]["status"] == "subscribed"
    assert second["identifiers"][0]["channels"]["email"]["status"] == "nonSubscribed"


def test_a_refused_row_refuses_only_itself(build):
    target, header, matching = CASES["campaign_monitor"]
    campaign_monitor = build("campaign_monitor", target, matching, header)
    rows = [["a@example.com", "1", "Ana", "x" * 251, "", ""], ["b@example.com", "2", "Ben", "gold", "", ""]]
    items, refused = campaign_monitor.items(["a@example.com", "b@example.com"], Rows(rows))
    assert refused == {0: "custom field tier longer than 250 characters"} and items[0] is None
    assert json.loads(items[1])["CustomFields"] == [{"Key": "tier", "Value": "gold"}]


def test_a_template_fills_its_holes_from_columns_and_checks_their_number():
    template = Template().text('{"a":').hole().text(',"b":').hole().text("}")
    out = [None, None, None]
    template.fill([['"x"', '"y"', '"z"'], ["1", "2", "3"]], [0, 2], out)
    assert out == ['{"a":"x","b":1}', None, '{"a":"z","b":3}']
    with pytest.raises(ValueError, match="2 holes, given 1"):
        template.fill([['"x"']], [0], [None])


@pytest.mark.parametrize("empty_share", [1 / 3, 0.02], ids=["many-empties", "few-empties"])
def test_rows_are_grouped_by_which_optional_fields_they_have(empty_share):
    """Every row lands in exactly one group, the one naming exactly the fields it has
    (an empty one, '""', is a field it has not), whether many rows lack fields (decided
    row by row) or few (found column by column); a block without empties is one group."""
    from destinations.base import EMPTY, by_presence

    chooser = random.Random(11)
    columns = {name: [EMPTY if chooser.random() < empty_share else chooser.choice(['"x"', '"y"']) for _ in range(500)]
               for name in ("a", "b", "c")}
    assert sum(column.count(EMPTY) for column in columns.values()) > 10
    seen: list[int] = []
    for present, indices in by_presence(columns, 500):
        for index in indices:
            assert present == tuple(name for name in columns if columns[name][index] != EMPTY)
        seen += indices
    assert sorted(seen) == list(range(500))
    full = {name: ['"x"'] * 4 for name in ("a", "b")}
    assert [(present, list(indices)) for present, indices in by_presence(full, 4)] == [(("a", "b"), [0, 1, 2, 3])]
