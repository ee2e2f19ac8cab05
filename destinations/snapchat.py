"""Snapchat custom audiences (Snap Audience Match), Marketing API v1.

Profiles are added to the audience the export names (`target.audience_id`) as SHA-256
hashes of normalised emails (`EMAIL_SHA256`), 50,000 per request by default (Snapchat
takes up to 100,000: see `batch_size` below). Access tokens
come from the refresh-token grant and are refreshed before expiry and once on a 401.
A batch succeeds or fails whole: Snapchat reports no per-identifier status.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from shared.columns import none_positions
from shared.config import DestinationSpec, Setting
from shared.http import RefreshingBearer, Response, json_body, vendor_message
from shared.profiles import is_sha256_hex, sha256_hexes

from .base import Destination, FatalError, Rows

SPEC = DestinationSpec(
    type="snapchat",
    display_name="Snapchat",
    identifier="email",
    secret_fields=("client_id", "client_secret", "refresh_token"),
    settings=(
        Setting("api_base", "Marketing API base URL", default="https://adsapi.snapchat.com/v1",
                hosts=(r"adsapi\.snapchat\.com",)),
        Setting("token_url", "OAuth token endpoint", default="https://accounts.snapchat.com/login/oauth2/access_token",
                hosts=(r"accounts\.snapchat\.com",)),
    ),
    target=(
        Setting("audience_id", "Snapchat audience (segment) id the profiles are added to", required=True,
                check=lambda value: "must not contain '/'" if "/" in value else None),
    ),
    accepts_attributes=False,
    # Half the most Snapchat takes: a batch in flight is ~15 MB at each step (prepared,
    # stored, read, sent), and while the plan reads on, one is sent as another is built.
    # 10 requests/s still allow 500,000 profiles a second, ten times what a plan reads.
    batch_size=50_000,
    max_batch_size=100_000,
    requests_per_second=10.0,
    rate_window_s=1.0,  # 10 requests in any second, per access token
)

# Snapchat needs about this many matched users before an audience can be targeted.
MIN_TARGETABLE = 1_000


class Snapchat(Destination):
    SPEC = SPEC
    # A row's key is its hash, and the items are the hashes: a prepared batch stores them once.
    ITEMS_ARE_KEYS = True

    @staticmethod
    def keys_of_emails(values: list[str], emails: list[str | None],
                       reasons: dict[int, str]) -> tuple[list[str | None], dict[int, str]]:
        keys, reasons = sha256_hexes(emails), dict(reasons)
        for index in none_positions(emails):
            hashed = values[index].strip().lower()
            if is_sha256_hex(hashed):  # already hashed upstream: never hash twice
                reasons.pop(index, None)
                keys[index] = hashed
        return keys, reasons

    def items(self, keys: Sequence[str], rows: Rows) -> tuple[list[str | None], dict[int, str]]:
        return list(keys), {}  # the hashes themselves: a batch of 50,000 holds no other object per row

    def encode_batch(self, items: list[str]) -> str:
        """The whole request body: a 50,000-hash batch (3.4 MB) is then sent from the prepared
        line as it is, where adding the envelope at send time copied it once per request."""
        return '{"users":[{"schema":["EMAIL_SHA256"],"data":[["' + '"],["'.join(items) + '"]]}]}'  # hex: no escaping

    @classmethod
    def keys_of_batch(cls, batch: bytes) -> list[str]:
        return [user[0] for user in json.loads(bytes(batch))["users"][0]["data"]]

    def send(self, keys: Sequence[str], items: bytes) -> dict[int, str]:
        url = f"{self.settings['api_base']}/segments/{self.target['audience_id']}/users"
        response = self.http.request("POST", url, auth=self._token(), data=items,
                                     headers={"Content-Type": "application/json"})
        answer = json_body(response, "Snapchat")
        if not isinstance(answer, dict) or answer.get("request_status") != "SUCCESS":
            message = answer.get("debug_message") if isinstance(answer, dict) else None
            raise FatalError(f"Snapchat did not accept the batch: {message or 'no SUCCESS status'}")
        # The request's status can be SUCCESS with its one sub-request (the batch) failed.
        for sub in answer.get("users") or []:
            if isinstance(sub, dict) and sub.get("sub_request_status", "SUCCESS") != "SUCCESS":
                reason = sub.get("sub_request_error_reason") or "no reason given"
                raise FatalError("Snapchat did not accept the batch: its sub-request status is "
                                 f"{sub.get('sub_request_status')}: {reason}")
        return {}

    @classmethod
    def warnings(cls, delivered: int) -> list[str]:
        if delivered < MIN_TARGETABLE:
            return [f"Snapchat needs about {MIN_TARGETABLE:,} matched users before an audience can be targeted; "
                    f"this run delivered {delivered:,}"]
        return []

    @staticmethod
    def describe(response: Response) -> str:
        return vendor_message(response, "debug_message", "display_message", "error_description", "error")

    def _token(self) -> RefreshingBearer:
        form = {"grant_type": "refresh_token", "refresh_token": self.credentials["refresh_token"],
                "client_id": self.credentials["client_id"], "client_secret": self.credentials["client_secret"]}
        # The grant goes to accounts.snapchat.com, outside the Marketing API's 10 requests/s:
        # taking a slot of it held the first batch of each process back by a tenth of a second.
        return RefreshingBearer.shared(self.connection.name, "Snapchat", self.settings["token_url"], form,
                                       self.http.unpaced())
