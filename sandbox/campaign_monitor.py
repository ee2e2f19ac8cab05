"""Stand-in of Campaign Monitor's API v3.3 subscriber import and removal, with its OAuth refresh.

Follows DESTINATIONS.md: HTTP Basic with the API key as user name (any password), or an
OAuth bearer token refreshed at `POST /oauth/token` (an expired one is 401 Code 121);
`POST /api/v3.3/subscribers/{listid}/import.json` of at most 1,000 subscribers (Code 209
above), `ConsentToTrack` mandatory; suppressed (204), bounced (207) and unsubscribed
(206, unless `Resubscribe`) addresses are skipped and reported, the other rows imported,
and any failure makes the answer a 400 Code 210 carrying `ResultData`;
`DELETE /api/v3.3/subscribers/{listid}.json?email=` and `POST .../unsubscribe.json`.

Not published, chosen here (keep clients adaptive to them):
- rate limit 10 requests/s (fixed window), a 429 `{"Code": 429, "Message": "Rate limit
  exceeded"}` with `X-RateLimit-Reset` in seconds to wait;
- a missing or invalid `ConsentToTrack` refuses the whole request with 400 Code 400
  ("Failed to deserialize your request", CM's answer to a malformed body);
- a custom field value over 250 characters refuses that subscriber with Code 1;
- a wrong API key is 401 Code 100, an unknown OAuth token Code 120; no credentials Code 50;
- removing an address that is not on the list is 400 Code 203; a deleted subscriber is
  imported again (deleting, unlike unsubscribing, lets an address come back);
- addresses are matched case-insensitively and kept lowercased.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
from collections.abc import Iterable
from typing import Any

from .addresses import email_is_valid
from .server import Faults, Request, Response, StandIn, Window

__all__ = ["CampaignMonitorStandIn"]

MAX_IMPORT = 1000
MAX_FIELD_VALUE = 250
CONSENT = ("Yes", "No", "Unchanged")
TOKEN_LIFETIME_S = 1_209_600  # two weeks, CM's documented access token lifetime
RATE_LIMIT = (10, 1.0)  # requests per seconds: assumed (Campaign Monitor publishes none), see the docstring


class CampaignMonitorStandIn(StandIn):
    vendor = "campaign_monitor"

    def __init__(self, *, api_key: str, list_ids: Iterable[str], oauth: dict[str, str] | None = None,
                 rate_limited: bool = True, faults: Faults | None = None, latency_s: float = 0.0,
                 suppressed: Iterable[str] = (), unsubscribed: dict[str, Iterable[str]] | None = None,
                 bounced: Iterable[str] = (), tls: bool = False,
                 echo_credentials: bool = False):
        super().__init__(faults=faults, window=Window(*RATE_LIMIT) if rate_limited else None,
                         latency_s=latency_s, tls=tls, echo_credentials=echo_credentials)
        self.api_key = api_key
        self.refresh_token = (oauth or {}).get("refresh_token")
        self.tokens: dict[str, bool] = {oauth["access_token"]: True} if oauth else {}  # token -> still valid
        self._granted_at: dict[str, float] = {}  # token -> when granted (epoch seconds)
        self.suppressed = {address.lower() for address in suppressed}
        self.bounced = {address.lower() for address in bounced}
        self._unsubscribed = {list_id: [address.lower() for address in addresses]
                              for list_id, addresses in (unsubscribed or {}).items()}
        self.lists: dict[str, dict[str, dict[str, Any]]] = {list_id: {} for list_id in list_ids}
        self.reset()

    def routes(self):
        subscribers = r"/api/v3\.3/subscribers/(?P<list_id>[^/.]+)"
        return [
            ("POST", r"/oauth/token", self.grant_token),
            ("POST", subscribers + r"/import\.json", self.import_subscribers),
            ("DELETE", subscribers + r"\.json", self.delete_subscriber),
            ("POST", subscribers + r"/unsubscribe\.json", self.unsubscribe),
        ]

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"lists": {list_id: {email: {**subscriber, "CustomFields": dict(subscriber["CustomFields"])}
                                        for email, subscriber in members.items()}
                              for list_id, members in self.lists.items()}}

    def reset(self) -> None:
        for list_id, members in self.lists.items():
            members.clear()
            for email in self._unsubscribed.get(list_id, ()):
                members[email] = {"Name": "", "ConsentToTrack": "Unchanged", "CustomFields": {},
                                  "State": "Unsubscribed"}

    def active(self, list_id: str) -> set[str]:
        """The addresses of the list's active subscribers (what a CM segment on the list filters)."""
        with self.lock:
            return {email for email, subscriber in self.lists[list_id].items() if subscriber["State"] == "Active"}

    @staticmethod
    def active_in(state: dict[str, Any], list_id: str) -> set[str]:
        """`active` computed from a `state()` (of this process's stand-in or another's)."""
        return {email for email, subscriber in state["lists"][list_id].items() if subscriber["State"] == "Active"}

    def expire_tokens(self, granted_before: float | None = None) -> None:
        """Make the OAuth access tokens expired (a token expiring mid-run); with
        `granted_before`, only those granted before then."""
        with self.lock:
            self.tokens = {token: valid and granted_before is not None
                           and self._granted_at.get(token, 0.0) >= granted_before
                           for token, valid in self.tokens.items()}

    def throttle_answer(self, wait_s: float, reset_epoch: float) -> Response:
        return Response(429, {"Code": 429, "Message": "Rate limit exceeded"}, {
            "X-RateLimit-Limit": str(self.window.limit if self.window else 10), "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(max(1, math.ceil(wait_s)))})

    def server_error_answer(self, status: int) -> Response:
        return Response(status, {"Code": status, "Message": "Internal Server Error" if status == 500
                                 else "Service Unavailable"})

    def bad_request(self, message: str) -> Response:
        return Response(400, {"Code": 400, "Message": message})

    def not_found(self, path: str) -> Response:
        return Response(404, {"Code": 404, "Message": f"Not Found: {path}"})

    # -- OAuth -----------------------------------------------------------------------------

    def grant_token(self, request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != "refresh_token":
            return Response(400, {"error": "unsupported_grant_type", "error_description": "use refresh_token"})
        if not self.refresh_token or form.get("refresh_token") != self.refresh_token:
            refused = "Specified refresh_token was invalid" + self.presented(request, form=True)
            return Response(400, {"error": "invalid_grant", "error_description": refused})
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = True
            self._granted_at[token] = time.time()
        return Response(200, {"access_token": token, "expires_in": TOKEN_LIFETIME_S,
                              "refresh_token": self.refresh_token})

    # -- subscribers -----------------------------------------------------------------------

    def import_subscribers(self, request: Request) -> Response:
        refused = self._refuse(request)
        if refused:
            return refused
        body = request.json()
        rows = body.get("Subscribers") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            return self.bad_request("Failed to deserialize your request. Fields in error: Subscribers")
        if len(rows) > MAX_IMPORT:
            return Response(400, {"Code": 209, "Message": f"At most {MAX_IMPORT} subscribers per import, "
                                                          f"got {len(rows)}"})
        for index, row in enumerate(rows):
            if row.get("ConsentToTrack") not in CONSENT:
                return self.bad_request(f"Failed to deserialize your request. Fields in error: "
                                        f"Subscribers[{index}].ConsentToTrack must be Yes, No or Unchanged")
        resubscribe = body.get("Resubscribe") is True
        failures, duplicates, seen = [], [], set()
        existing = new = 0
        # One pass, no helper call per subscriber: a 1,000-subscriber import is this
        # stand-in's heaviest request, and its CPU bounded the benchmarks' sending.
        with self.lock:
            members = self.lists[request.params["list_id"]]
            for row in rows:
                address = row.get("EmailAddress")
                email = address.lower() if isinstance(address, str) else address
                if email in seen:
                    if address not in duplicates:
                        duplicates.append(address)
                    continue
                seen.add(email)
                current = members.get(email)
                code, message = self._refusal(email, row, current, resubscribe)
                if code:
                    failures.append({"EmailAddress": address, "Code": code, "Message": message})
                    continue
                was_active = current is not None and current["State"] == "Active"
                if was_active:
                    existing += 1
                else:
                    new += 1
                consent = row["ConsentToTrack"]
                if consent == "Unchanged" and current is not None:
                    consent = current["ConsentToTrack"]
                fields = dict(current["CustomFields"]) if was_active else {}
                for field in row.get("CustomFields") or ():
                    fields[field["Key"]] = field["Value"]
                name = row.get("Name")
                if name is None:
                    name = current["Name"] if current is not None else ""
                members[email] = {"Name": name, "ConsentToTrack": consent,
                                  "CustomFields": fields, "State": "Active"}
        result = {"TotalUniqueEmailsSubmitted": len(seen), "TotalExistingSubscribers": existing,
                  "TotalNewSubscribers": new, "DuplicateEmailsInSubmission": duplicates, "FailureDetails": failures}
        if failures:
            return Response(400, {"Code": 210, "Message": "Subscriber Import had some failures", "ResultData": result})
        return Response(201, result)

    def _refusal(self, email: Any, row: dict[str, Any], current: dict[str, Any] | None,
                 resubscribe: bool) -> tuple[int, str] | tuple[None, None]:
        """CM's failure code and message for one subscriber, or (None, None) to import it."""
        if not email_is_valid(email):
            return 1, "Invalid Email Address"
        custom_fields = row.get("CustomFields") or []
        if not isinstance(custom_fields, list):
            return 1, "CustomFields must be a list of {Key, Value}"
        too_long = False
        for field in custom_fields:
            if not isinstance(field, dict) or not isinstance(field.get("Key"), str):
                return 1, "CustomFields must be a list of {Key, Value}"
            value = field.get("Value", "")
            if len(value if isinstance(value, str) else str(value)) > MAX_FIELD_VALUE:
                too_long = True
        if too_long:
            return 1, f"Custom field value exceeds {MAX_FIELD_VALUE} characters"
        if email in self.suppressed:
            return 204, "In Suppression List"
        if email in self.bounced:
            return 207, "Is Bounced"
        if current is not None and current["State"] == "Unsubscribed" and not resubscribe:
            return 206, "Is Unsubscribed"
        return None, None

    def delete_subscriber(self, request: Request) -> Response:
        return self._remove(request, request.query.get("email", [""])[0], "Deleted")

    def unsubscribe(self, request: Request) -> Response:
        body = request.json()
        return self._remove(request, body.get("EmailAddress") if isinstance(body, dict) else None, "Unsubscribed")

    def _remove(self, request: Request, address: Any, state: str) -> Response:
        refused = self._refuse(request)
        if refused:
            return refused
        if not email_is_valid(address):
            return Response(400, {"Code": 1, "Message": "Invalid Email Address"})
        with self.lock:
            subscriber = self.lists[request.params["list_id"]].get(address.lower())
            if subscriber is None or subscriber["State"] != "Active":
                return Response(400, {"Code": 203, "Message": "Subscriber not in list or has already been removed."})
            subscriber["State"] = state
        return Response(200)

    def _refuse(self, request: Request) -> Response | None:
        """401 in CM's codes for missing, wrong or expired credentials; 404 Code 101 for an unknown list."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme == "Bearer" and self.tokens:
            with self.lock:
                valid = self.tokens.get(credential)
            if valid is None:
                return Response(401, {"Code": 120, "Message": "Invalid OAuth Token" + self.presented(request)})
            if not valid:
                return Response(401, {"Code": 121, "Message": "Expired OAuth Token" + self.presented(request)})
        elif scheme == "Basic":
            try:
                user = base64.b64decode(credential, validate=True).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                return Response(401, {"Code": 50, "Message": "Must supply a valid HTTP Basic Authorization header"})
            if user != self.api_key:
                return Response(401, {"Code": 100, "Message": "Invalid API Key" + self.presented(request)})
        else:
            return Response(401, {"Code": 50, "Message": "Must supply a valid HTTP Basic Authorization header"})
        if request.params["list_id"] not in self.lists:
            return Response(404, {"Code": 101, "Message": "Invalid ListID"})
        return None
