"""Braze: users upserted with `/users/track`, segment membership written as a custom attribute.

Braze segments are filter-based; there is no add-to-segment call. Each profile becomes a
user keyed by `external_id` (the export's customer id column) with `email`, the mapped
attributes, and the membership attribute set to true; the Braze segment filters on it.
Up to 75 users per request; per-user refusals come back in `errors[]` by index while
the rest of the batch is applied.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Any

from shared.columns import blank_positions
from shared.config import DestinationSpec, Setting
from shared.http import Response, StaticKey, json_body

from .base import JSON_STRING, Destination, Rows, Template, json_column

# Fields that identify a Braze user: an attribute mapping must not overwrite them.
_RESERVED = {"external_id", "braze_id", "user_alias", "email", "_update_existing_only"}
# Fields holding what the person agreed to: an export never sets them (Braze takes no
# consent column here; a column mapped onto them would opt people in, or override an
# unsubscribe, without a consent record).
_SUBSCRIPTIONS = {"email_subscribe", "push_subscribe", "subscription_groups", "email_open_tracking_disabled",
                  "email_click_tracking_disabled"}


def _attribute_problem(name: str) -> str | None:
    if name in _RESERVED:
        return f"'{name}' is set by the export itself, not by an attribute mapping"
    if name.lower() in _SUBSCRIPTIONS:
        return f"'{name}' is a subscription state: an export never changes what a person agreed to"
    if name.startswith("$") or not name.strip() or len(name) > 255:
        return "must be a Braze attribute name: 1-255 characters, not starting with $"
    return None


def _default_membership(export: dict[str, Any]) -> str:
    segment = (export.get("target") or {}).get("segment_id") or "segment"
    return "segment_" + re.sub(r"[^A-Za-z0-9_]", "_", str(segment))


SPEC = DestinationSpec(
    type="braze",
    display_name="Braze",
    identifier="customer_id",
    secret_fields=("api_key",),
    settings=(
        Setting("rest_endpoint", "the workspace's REST endpoint, e.g. https://rest.iad-01.braze.com", required=True,
                hosts=(r"rest\.[a-z]{2,4}-\d{2}\.braze\.(?:com|eu)",)),
    ),
    target=(
        Setting("segment_id", "Braze segment API identifier the export feeds", required=True),
        Setting("membership_attribute", "custom attribute set to true on members (the segment filters on it)",
                default=_default_membership, check=_attribute_problem),
    ),
    requires_customer_id=True,
    check_attribute=_attribute_problem,
    batch_size=75,
    max_batch_size=75,
    requests_per_second=1000.0,  # 3,000 requests per 3 s per workspace
    rate_window_s=3.0,
)


class Braze(Destination):
    SPEC = SPEC

    @staticmethod
    def identify_all(values: list[str]) -> tuple[list[str | None], dict[int, str]]:
        keys: list[str | None] = list(map(str.strip, values))
        for index in blank_positions(keys):
            keys[index] = None
        return keys, {}

    def items(self, keys: Sequence[str], rows: Rows) -> tuple[list[str | None], dict[int, str]]:
        """Users as JSON text. A user without email is still a member; an invalid email refuses the row."""
        email = self.columns["email"]
        _, refused = rows.checked_emails(email)  # checked once for every export keyed by that column
        membership = self.target["membership_attribute"]
        optional = {"email": rows.emails_json(email)}
        optional.update((name, column) for name, column in self.attribute_json(rows).items() if name != membership)
        return self.render([json_column(keys)], optional, dict(refused))

    def template(self, present: tuple[str, ...]) -> Template:
        template = Template().text('{"external_id":').hole()
        for name in present:  # "email" among them: attributes cannot be named so
            template.text("," + JSON_STRING(name) + ":").hole()
        return template.text("," + JSON_STRING(self.target["membership_attribute"]) + ":true}")

    def send(self, keys: Sequence[str], items: bytes) -> dict[int, str]:
        body = b'{"attributes":' + items + b"}"
        response = self.http.request("POST", f"{self.settings['rest_endpoint']}/users/track",
                                     auth=StaticKey({"Authorization": f"Bearer {self.credentials['api_key']}"}),
                                     data=body, headers=JSON,
                                     accept=partial(_every_item_refused, count=len(keys)))
        answer = json_body(response, "Braze")
        refused = {}
        for error in answer.get("errors") or []:
            index = error.get("index") if isinstance(error, dict) else None
            if isinstance(index, int) and error.get("input_array") == "attributes":
                refused[index] = f"Braze: {error.get('type') or 'refused'}"
        return refused


JSON = {"Content-Type": "application/json"}


def _every_item_refused(response: Response, count: int) -> bool:
    """A 400 listing a per-index error for each of the batch's `count` users is per-user
    refusals (Braze answers 400 when none was valid); any other 400 is a bad request,
    which fails the destination rather than count unlisted users as delivered."""
    if response.status_code != 400:
        return False
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return False
    if not errors or not all(isinstance(e, dict) and isinstance(e.get("index"), int) for e in errors):
        return False
    # The same rule as `send` reads refusals by: an error of the attributes array, by index.
    return {e["index"] for e in errors if e.get("input_array") == "attributes"} == set(range(count))
