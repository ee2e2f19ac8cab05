"""Stand-in of Omnisend's API version 2026-03-15: contact batches, their status and items, tag removal.

Follows DESTINATIONS.md: `Authorization: Omnisend-API-Key <key>` and `Omnisend-Version:
2026-03-15` on every call (missing version 400, any other version 410 Gone); errors are
RFC 9457 problem details (`application/problem+json`); `POST /api/batches` of 1 to
`max_batch` (default 100) contacts -> `{batchID, totalCount}`, then `GET /api/batches/{id}`
and `GET /api/batches/{id}/items` (`responses[]` / `errors[]` of `{itemID, request,
responseCode, response}`); `DELETE /api/contacts/tags` of at most 250 emails -> 202
(60 requests/min of its own); 400 requests/min per brand (sliding), throttling a 429
problem carrying `retryAfter` in whole seconds.

A batch is applied as soon as it is posted; its reported status follows
`finish_after_polls` (that many `inProgress` polls, then `finished`, or `stopped` after
its first half with `stop_batches`), and its items are listed only once it has ended.
Contacts are keyed by lowercased email; an upsert merges fields and adds tags, never
removes one.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from .addresses import email_is_valid
from .server import Faults, Request, Response, StandIn, Window

__all__ = ["OmnisendStandIn"]

API_VERSION = "2026-03-15"
MAX_TAG_EMAILS = 250
STATUSES = ("subscribed", "nonSubscribed", "unsubscribed")
FIELDS = frozenset(("firstName", "lastName", "address", "city", "state", "postalCode", "country", "countryCode"))
_PROBLEM = "application/problem+json"
RATE_LIMIT = (400, 60.0)  # requests per seconds (a sliding window), per store


class OmnisendStandIn(StandIn):
    vendor = "omnisend"

    def __init__(self, *, api_key: str, rate_limited: bool = True, faults: Faults | None = None,
                 latency_s: float = 0.0, max_batch: int = 100, refuse_emails: Iterable[str] = (),
                 finish_after_polls: int = 0, stop_batches: bool = False, tls: bool = False,
                 echo_credentials: bool = False):
        super().__init__(faults=faults, window=Window(*RATE_LIMIT, sliding=True) if rate_limited else None,
                         latency_s=latency_s, tls=tls, echo_credentials=echo_credentials)
        self.tag_window = Window(60, 60.0, sliding=True) if rate_limited else None
        # The batch list's `paging.next` as given, whatever the page (a link to another host:
        # the API's text, which a client must not follow with its key): None, the real link.
        self.paging_next: str | None = None
        self.api_key, self.max_batch = api_key, max_batch
        self.refuse_emails = {address.lower() for address in refuse_emails}
        self.finish_after_polls, self.stop_batches = finish_after_polls, stop_batches
        self.contacts: dict[str, dict[str, Any]] = {}  # email -> fields, "tags" (a set), "status"
        self.batches: dict[str, dict[str, Any]] = {}
        self.items_issued = secrets.randbelow(1 << 24)  # item ids: this count, after the batch's id prefix

    def routes(self):
        batch = r"/api/batches/(?P<batch_id>[^/]+)"
        return [
            ("POST", r"/api/batches", self.create_batch),
            ("GET", r"/api/batches", self.list_batches),
            ("GET", batch, self.get_batch),
            ("GET", batch + r"/items", self.get_items),
            ("DELETE", r"/api/contacts/tags", self.remove_tags),
        ]

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"contacts": {email: {**contact, "tags": sorted(contact["tags"])}
                                 for email, contact in self.contacts.items()}}

    def reset(self) -> None:
        self.contacts.clear()
        self.batches.clear()

    def tagged(self, tag: str) -> set[str]:
        """The emails of contacts carrying `tag`: the Omnisend segment filtering on it."""
        with self.lock:
            return {email for email, contact in self.contacts.items() if tag in contact["tags"]}

    @staticmethod
    def tagged_in(state: dict[str, Any], tag: str) -> set[str]:
        """`tagged` computed from a `state()` (of this process's stand-in or another's)."""
        return {email for email, contact in state["contacts"].items() if tag in contact["tags"]}

    # -- answers in Omnisend's form --------------------------------------------------------

    def throttle_answer(self, wait_s: float, reset_epoch: float) -> Response:
        return _problem(429, "Too Many Requests", "rate limit exceeded, retry later",
                        retryAfter=max(1, math.ceil(wait_s)))

    def server_error_answer(self, status: int) -> Response:
        return _problem(status, "Internal Server Error" if status == 500 else "Service Unavailable", "try again later")

    def bad_request(self, message: str) -> Response:
        return _problem(400, "Bad Request", message)

    def not_found(self, path: str) -> Response:
        return _problem(404, "Not Found", f"no resource at {path}")

    # -- batches ---------------------------------------------------------------------------

    def create_batch(self, request: Request) -> Response:
        refused = self._refuse(request)
        if refused:
            return refused
        body = request.json()
        if not isinstance(body, dict) or body.get("method") != "POST" or body.get("endpoint") != "contacts":
            return _invalid("method", "only method POST on endpoint contacts is supported here")
        items = body.get("items")
        if not isinstance(items, list) or not 1 <= len(items) <= self.max_batch:
            return _invalid("items", f"items must hold 1 to {self.max_batch} entries")
        processed = items[:len(items) // 2] if self.stop_batches else items
        prefix = _id_prefix()
        with self.lock:
            # Each contact's outcome: (why it was refused, None) or (None, (key, contactID)).
            # The item entries are written only if the batch's items are asked for (rarely).
            outcomes = [self._upsert(contact, prefix) for contact in processed]
            first_item, self.items_issued = self.items_issued, self.items_issued + len(processed)
        now = _timestamp()
        batch = {"batchID": _object_id(), "method": "POST", "endpoint": "contacts",
                 "status": "stopped" if self.stop_batches else "finished", "totalCount": len(items),
                 "finishedCount": len(processed), "errorsCount": sum(1 for detail, _ in outcomes if detail),
                 "createdAt": now, "startedAt": now, "endedAt": now, "polls": 0,
                 "processed": (processed, outcomes, prefix, first_item)}
        with self.lock:
            self.batches[batch["batchID"]] = batch
        return Response(201, {"batchID": batch["batchID"], "totalCount": len(items)})

    def list_batches(self, request: Request) -> Response:
        """`GET /batches?endpoint=contacts&offset=&limit=`: newest first; listing counts as a poll."""
        refused = self._refuse(request)
        if refused:
            return refused
        query = {key: values[0] for key, values in request.query.items()}
        if query.get("endpoint") not in ("contacts", "products", "events"):
            return _invalid("endpoint", "endpoint is required: contacts, products or events")
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
        if offset < 0 or not 1 <= limit <= 250:
            return _invalid("limit", "offset must be at least 0 and limit 1 to 250")
        with self.lock:
            ordered = [b for b in reversed(self.batches.values()) if b["endpoint"] == query["endpoint"]]
            if query.get("status"):
                ordered = [b for b in ordered if self._summary(b)["status"] == query["status"]]
            page = ordered[offset:offset + limit]
            summaries = [self._summary(batch) for batch in page]
            for batch in page:
                batch["polls"] += 1
        following = offset + limit < len(ordered)
        base = f"/api/batches?endpoint={query['endpoint']}&limit={limit}"
        following_page = self.paging_next or (f"{base}&offset={offset + limit}" if following else None)
        return Response(200, {"batches": summaries, "paging": {
            "offset": offset, "limit": limit, "next": following_page,
            "previous": f"{base}&offset={max(0, offset - limit)}" if offset else None}})

    def _summary(self, batch: dict[str, Any]) -> dict[str, Any]:
        report = {key: batch[key] for key in ("batchID", "method", "endpoint", "status", "totalCount",
                                              "finishedCount", "errorsCount", "createdAt", "startedAt", "endedAt")}
        if batch["polls"] < self.finish_after_polls:
            report.update(status="inProgress", finishedCount=0, errorsCount=0, endedAt=None)
        return report

    def get_batch(self, request: Request) -> Response:
        return self._report(request, with_items=False)

    def get_items(self, request: Request) -> Response:
        return self._report(request, with_items=True)

    def _report(self, request: Request, with_items: bool) -> Response:
        refused = self._refuse(request)
        if refused:
            return refused
        with self.lock:
            batch = self.batches.get(request.params["batch_id"])
            if batch is None:
                return _problem(404, "Not Found", f"batch {request.params['batch_id']} not found")
            ended = batch["polls"] >= self.finish_after_polls
            report = self._summary(batch)
            if not with_items:
                batch["polls"] += 1
        if with_items:
            responses, errors = _items(*batch["processed"]) if ended else ([], [])
            report.update(responses=responses, errors=errors)
        return Response(200, report)

    def _upsert(self, contact: Any, id_prefix: str) -> tuple[str | None, tuple[str, str] | None]:
        """Apply one contact: (None, (its key, its contactID)), or (why it was refused, None). Holds the lock."""
        if not isinstance(contact, dict) or not isinstance(contact.get("identifiers"), list):
            return "identifiers are required", None
        for identifier in contact["identifiers"]:
            if isinstance(identifier, dict) and identifier.get("type") == "email":
                break
        else:
            return "an email identifier is required", None
        email = identifier.get("id")
        if not email_is_valid(email) or email.lower() in self.refuse_emails:
            return "invalid email", None
        status = ((identifier.get("channels") or {}).get("email") or {}).get("status")
        if status not in STATUSES:
            return f"email channel status must be one of {', '.join(STATUSES)}", None
        tags, properties = contact.get("tags", []), contact.get("customProperties", {})
        if not isinstance(tags, list) or not all(isinstance(tag, str) and tag for tag in tags):
            return "tags must be a list of non-empty strings", None
        if not isinstance(properties, dict):
            return "customProperties must be an object", None
        key = email.lower()
        stored = self.contacts.get(key)
        if stored is None:
            stored = self.contacts[key] = {"contactID": _object_id(id_prefix), "tags": set()}
        for name, value in contact.items():
            if name in FIELDS and value is not None:
                stored[name] = value
        stored["status"] = status
        stored["tags"].update(tags)
        if properties:
            stored["customProperties"] = {**stored.get("customProperties", {}), **properties}
        return None, (key, stored["contactID"])

    # -- tags ------------------------------------------------------------------------------

    def remove_tags(self, request: Request) -> Response:
        refused = self._refuse(request)
        if refused:
            return refused
        if self.tag_window is not None:
            admitted, wait, _, reset = self.tag_window.admit()
            if not admitted:
                return self.throttle_answer(wait, reset)
        body = request.json()
        emails, tags = (body.get("emails"), body.get("tags")) if isinstance(body, dict) else (None, None)
        if not isinstance(emails, list) or not 1 <= len(emails) <= MAX_TAG_EMAILS:
            return _invalid("emails", f"emails must hold 1 to {MAX_TAG_EMAILS} addresses")
        if not isinstance(tags, list) or not tags or not all(isinstance(tag, str) for tag in tags):
            return _invalid("tags", "tags must be a non-empty list of strings")
        with self.lock:
            for email in emails:
                contact = self.contacts.get(str(email).lower())
                if contact:
                    contact["tags"].difference_update(tags)
        return Response(202)

    def _refuse(self, request: Request) -> Response | None:
        """401 without this brand's key; 400 without a version; 410 for any retired version."""
        if request.headers.get("authorization") != f"Omnisend-API-Key {self.api_key}":
            return _problem(401, "Unauthorized", "missing or invalid API key" + self.presented(request))
        version = request.headers.get("omnisend-version")
        if not version:
            return _problem(400, "Bad Request", f"the Omnisend-Version header is required (current: {API_VERSION})")
        if version != API_VERSION:
            return _problem(410, "Gone", f"API version {version} is retired; use {API_VERSION}")
        return None


def _items(contacts: list[Any], outcomes: list[tuple[str | None, tuple[str, str] | None]], prefix: str,
           first_item: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A batch's `responses` and `errors` entries, from its contacts and their outcomes."""
    responses, errors = [], []
    for number, (contact, (detail, stored)) in enumerate(zip(contacts, outcomes, strict=True)):
        item = {"itemID": _object_id(prefix, first_item + number), "request": contact, "status": "finished"}
        if detail:
            errors.append({**item, "responseCode": 400, "response": _problem(400, "Bad Request", detail).body})
        else:
            key, contact_id = stored
            responses.append({**item, "responseCode": 200, "response": {"contactID": contact_id, "email": key}})
    return responses, errors


def _problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    slug = title.lower().replace(" ", "-")
    return Response(status, {"type": f"https://api.omnisend.com/problems/{slug}", "title": title,
                             "status": status, "detail": detail, **extra}, {"Content-Type": _PROBLEM})


def _invalid(field: str, message: str) -> Response:
    return _problem(400, "Bad Request", "validation failed", errors=[{"field": field, "code": "invalid",
                                                                      "message": message}])


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_PROCESS_ID = secrets.token_hex(5)
_COUNTER = itertools.count(secrets.randbelow(1 << 24))


def _object_id(prefix: str | None = None, number: int | None = None) -> str:
    """A 24-hex-digit id shaped like Omnisend's (MongoDB ObjectIds: seconds, process, counter).

    Unique and cheap: the stand-in makes two per contact, and drawing them from the
    system's random source cost more than the rest of an upsert. A batch passes the
    `_id_prefix` it took once for all its items, and its items' numbers (taken from the
    stand-in's `items_issued` when the batch was applied, so that asking twice gives the
    same ids).
    """
    return f"{prefix or _id_prefix()}{(next(_COUNTER) if number is None else number) & 0xFFFFFF:06x}"


def _id_prefix() -> str:
    return f"{int(time.time()):08x}{_PROCESS_ID}"
