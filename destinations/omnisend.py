"""Omnisend (API version 2026-03-15): contacts upserted in batches, tagged with the export's tag.

Omnisend segments are rule-based: membership is a tag on the contact, and the Omnisend
segment filters on it. Contacts go in asynchronous batches (`POST /batches`, up to 100
items in this API version); each batch is polled until `finished` (or `stopped`), then
its items are read for per-contact errors. A contact is marked `subscribed` only when
the export's consent column says so; otherwise `nonSubscribed`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from shared.config import DestinationSpec, Setting
from shared.http import FatalError, Response, StaticKey, json_body, vendor_message
from shared.profiles import consent_given

from .base import Destination

API_VERSION = "2026-03-15"
# Matching attribute -> Omnisend contact field; any other attribute becomes a custom property.
CONTACT_FIELDS = {"first_name": "firstName", "last_name": "lastName", "address": "address", "city": "city",
                  "state": "state", "postal_code": "postalCode", "country": "country", "country_code": "countryCode"}
POLL_FIRST_S, POLL_MAX_S, POLL_LIMIT_S = 0.05, 5.0, 900.0

SPEC = DestinationSpec(
    type="omnisend",
    display_name="Omnisend",
    identifier="email",
    secret_fields=("api_key",),
    settings=(
        Setting("api_base", "API base URL", default="https://api.omnisend.com/api", hosts=(r"api\.omnisend\.com",)),
    ),
    target=(
        Setting("tag", "tag added to every contact of the segment (the Omnisend segment filters on it)",
                default=lambda export: export.get("name")),
    ),
    accepts_consent=True,
    batch_size=100,
    max_batch_size=1000,  # the older reference allowed 1,000; version 2026-03-15 allows 100
    requests_per_second=400 / 60,
    parallel_chunks=2,
)


class Omnisend(Destination):
    SPEC = SPEC

    def item(self, key: str, fields: Sequence[str]) -> dict[str, Any]:
        consent = self.columns.get("consent")
        status = "subscribed" if consent is not None and consent_given(fields[consent]) else "nonSubscribed"
        contact: dict[str, Any] = {
            "identifiers": [{"type": "email", "id": key, "channels": {"email": {"status": status}}}],
            "tags": [self.target["tag"]],
        }
        custom = {}
        for name, value in self.attributes(fields).items():
            if name in CONTACT_FIELDS:
                contact[CONTACT_FIELDS[name]] = value
            else:
                custom[name] = value
        if custom:
            contact["customProperties"] = custom
        return contact

    def send(self, keys: list[str], items: str) -> dict[int, str]:
        base = self.settings["api_base"]
        body = ('{"method":"POST","endpoint":"contacts","items":' + items + "}").encode("utf-8")
        created = json_body(self._call("POST", f"{base}/batches", data=body,
                                       headers={"Content-Type": "application/json"}), "Omnisend")
        batch_id = created.get("batchID") if isinstance(created, dict) else None
        if not batch_id:
            raise FatalError("Omnisend accepted the batch without a batchID")
        batch = self._wait(f"{base}/batches/{batch_id}")
        if batch.get("status") == "finished" and not batch.get("errorsCount"):
            return {}
        outcome = json_body(self._call("GET", f"{base}/batches/{batch_id}/items"), "Omnisend")
        position = {email: index for index, email in enumerate(keys)}
        refused, answered = {}, set()
        for kind in ("responses", "errors"):
            for entry in outcome.get(kind) or []:
                email = _email_of(entry.get("request"))
                if email not in position:
                    continue
                answered.add(email)
                if kind == "errors" or (entry.get("responseCode") or 200) >= 400:
                    refused[position[email]] = f"Omnisend: {_item_reason(entry)}"
        if batch.get("status") == "stopped":
            for email, index in position.items():
                if email not in answered:
                    refused[index] = "Omnisend stopped the batch before this contact was processed"
        return refused

    @staticmethod
    def describe(response: Response) -> str:
        return vendor_message(response, "detail", "title")

    def _call(self, method: str, url: str, **kwargs: Any) -> Response:
        auth = StaticKey({"Authorization": f"Omnisend-API-Key {self.credentials['api_key']}",
                          "Omnisend-Version": API_VERSION})
        return self.http.request(method, url, auth=auth, **kwargs)

    def _wait(self, url: str) -> dict[str, Any]:
        """Poll a batch until Omnisend has finished (or stopped) it."""
        delay, waited = POLL_FIRST_S, 0.0
        while True:
            batch = json_body(self._call("GET", url), "Omnisend")
            if batch.get("status") in ("finished", "stopped"):
                return batch
            if waited >= POLL_LIMIT_S:
                raise FatalError(f"Omnisend batch still {batch.get('status')!r} after {POLL_LIMIT_S:.0f}s")
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, POLL_MAX_S)


def _email_of(request: Any) -> str | None:
    try:
        return request["identifiers"][0]["id"]
    except (KeyError, IndexError, TypeError):
        return None


def _item_reason(entry: dict[str, Any]) -> str:
    response = entry.get("response")
    if isinstance(response, dict):
        for key in ("detail", "title", "message", "error"):
            if response.get(key):
                return str(response[key])[:200]
    return f"refused ({entry.get('responseCode')})"
