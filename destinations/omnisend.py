"""Omnisend (API version 2026-03-15): contacts upserted in batches, tagged with the export's tag.

Omnisend segments are rule-based: membership is a tag on the contact, and the Omnisend
segment filters on it. Contacts go in asynchronous batches (`POST /batches`, up to 100
items in this API version); up to 50 submitted batches are then settled together from
the batch list (`finished` or `stopped`), and a batch's items are read only when it
reports errors: close to one request per batch under a 400/minute limit. A contact is marked `subscribed` only when
the export's consent column says so; otherwise `nonSubscribed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from shared.config import DestinationSpec, Setting
from shared.http import Response, StaticKey, json_body, vendor_message
from shared.profiles import consent_answers

from .base import JSON_STRING, Destination, FatalError, Pending, Rows, Template, json_column

API_VERSION = "2026-03-15"
# Matching attribute -> Omnisend contact field; any other attribute becomes a custom property.
CONTACT_FIELDS = {"first_name": "firstName", "last_name": "lastName", "address": "address", "city": "city",
                  "state": "state", "postal_code": "postalCode", "country": "country", "country_code": "countryCode"}
# Batches are confirmed from the batch list, up to 250 a request and a few pages back,
# rather than one status request per batch: half the requests under a 400/min limit.
LIST_LIMIT, LIST_PAGES = 250, 4
# A contact's email channel status by consent (False, True): only an explicit yes subscribes.
STATUS_BY_CONSENT = ('"nonSubscribed"', '"subscribed"')
UNCLEAR_CONSENT = "consent value neither yes nor no, read as no consent: nonSubscribed"

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
    rate_window_s=60.0,  # 400 requests in any minute (a sliding window)
)


class Omnisend(Destination):
    SPEC = SPEC
    MAX_UNSETTLED = 50

    def items(self, keys: Sequence[str], rows: Rows) -> tuple[list[str | None], dict[int, str]]:
        """Contacts as JSON text, `subscribed` only where the consent column says yes."""
        consent = self.columns.get("consent")
        if consent is None:
            status = ['"nonSubscribed"'] * len(rows)
        else:
            answers = consent_answers(rows.values(consent))
            status = [STATUS_BY_CONSENT[answer == "yes"] for answer in answers]
            if unclear := answers.count("?"):  # not taken for a yes: the report counts them
                self.notes[UNCLEAR_CONSENT] += unclear
        values = self.attribute_json(rows)
        # Contact fields first, then custom properties: the order of the template's holes.
        ordered = {name: values[name] for name in sorted(values, key=lambda name: name not in CONTACT_FIELDS)}
        return self.render([json_column(keys), status], ordered)

    def template(self, present: tuple[str, ...]) -> Template:
        template = Template().text('{"identifiers":[{"type":"email","id":').hole()
        template.text(',"channels":{"email":{"status":').hole().text("}}}],")
        template.text('"tags":[' + JSON_STRING(self.target["tag"]) + "]")
        custom = [name for name in present if name not in CONTACT_FIELDS]
        for name in present:
            if name in CONTACT_FIELDS:
                template.text(f',"{CONTACT_FIELDS[name]}":').hole()
        if custom:
            template.text(',"customProperties":{')
            for number, name in enumerate(custom):
                template.text(("," if number else "") + JSON_STRING(name) + ":").hole()
            template.text("}")
        return template.text("}")

    def send(self, keys: Sequence[str], items: bytes) -> Pending:
        body = b'{"method":"POST","endpoint":"contacts","items":' + items + b"}"
        created = json_body(self._call("POST", f"{self.settings['api_base']}/batches", data=body,
                                       headers={"Content-Type": "application/json"}), "Omnisend")
        batch_id = created.get("batchID") if isinstance(created, dict) else None
        if not batch_id:
            raise FatalError("Omnisend accepted the batch without a batchID")
        return Pending(batch_id, list(keys))

    def settle(self, pending: list[Pending]) -> list[dict[int, str] | None]:
        """Read the batches' states from the batch list (250 a request), items only where errors are."""
        base = self.settings["api_base"]
        wanted = {batch.ticket for batch in pending}
        found: dict[str, dict[str, Any]] = {}
        url: str | None = f"{base}/batches?endpoint=contacts&limit={LIST_LIMIT}&offset=0"
        for _ in range(LIST_PAGES):
            page = json_body(self._call("GET", url), "Omnisend")
            found.update({b["batchID"]: b for b in page.get("batches") or [] if b.get("batchID") in wanted})
            following = (page.get("paging") or {}).get("next")
            if wanted <= found.keys() or not following:
                break
            url = urljoin(base + "/", following)
            if urlsplit(url)[:2] != urlsplit(base)[:2]:  # the API key goes only to the API's own host
                raise FatalError("Omnisend's batch list pointed its next page at another host "
                                 f"({urlsplit(url).netloc})")
        outcomes: list[dict[int, str] | None] = []
        for batch in pending:
            state = found.get(batch.ticket)
            if state is None:  # older than the pages read: ask for it alone
                state = json_body(self._call("GET", f"{base}/batches/{batch.ticket}"), "Omnisend")
            if state.get("status") not in ("finished", "stopped"):
                outcomes.append(None)
            elif state.get("status") == "finished" and not state.get("errorsCount"):
                outcomes.append({})
            else:
                outcomes.append(self._refusals(batch, state["status"]))
        return outcomes

    def _refusals(self, batch: Pending, status: str) -> dict[int, str]:
        outcome = json_body(self._call("GET", f"{self.settings['api_base']}/batches/{batch.ticket}/items"),
                            "Omnisend")
        position = {email: index for index, email in enumerate(batch.keys)}
        refused, answered = {}, set()
        for kind in ("responses", "errors"):
            for entry in outcome.get(kind) or []:
                email = _email_of(entry.get("request"))
                if email not in position:
                    continue
                answered.add(email)
                if kind == "errors" or (entry.get("responseCode") or 200) >= 400:
                    refused[position[email]] = f"Omnisend: {_item_reason(entry)}"
        if status == "stopped":
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
