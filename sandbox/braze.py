"""Stand-in of Braze's REST `POST /users/track` (user attributes) and Braze's rate-limit headers.

Follows DESTINATIONS.md: `Authorization: Bearer <REST API key>`; `{"attributes": [...]}`
with at most `max_batch` objects (default 75), else 400 "Max Input Length Exceeded";
an object Braze cannot take is refused alone, as `{"type", "input_array": "attributes",
"index"}` in `errors`, while the others are applied (201); 400 when none is valid;
3,000 requests per 3 s (fixed window), every answer carrying `X-RateLimit-Limit`,
`X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch seconds), throttling a 429
without `Retry-After`.

Users are keyed by `external_id` (required here because the export always sends it);
attributes merge on upsert, a null value removes one, and an array attribute takes
`{"add": [...]}` / `{"remove": [...]}`. With `rate_limited=False` there is no window, so
no rate-limit headers either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .addresses import email_is_valid
from .server import Faults, Request, Response, StandIn, Window

__all__ = ["BrazeStandIn"]

RATE_LIMIT = (3000, 3.0)  # requests per seconds, per workspace
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."


class BrazeStandIn(StandIn):
    vendor = "braze"

    def __init__(self, *, api_key: str, rate_limited: bool = True, faults: Faults | None = None,
                 latency_s: float = 0.0, max_batch: int = 75, refuse_emails: Iterable[str] = (), tls: bool = False,
                 echo_credentials: bool = False):
        super().__init__(faults=faults, window=Window(*RATE_LIMIT) if rate_limited else None,
                         latency_s=latency_s, tls=tls, echo_credentials=echo_credentials)
        self.api_key = api_key
        self.max_batch = max_batch
        self.refuse_emails = {address.lower() for address in refuse_emails}
        self.users: dict[str, dict[str, Any]] = {}  # external_id -> attributes

    def routes(self):
        return [("POST", r"/users/track", self.track)]

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"users": {external_id: dict(attributes) for external_id, attributes in self.users.items()}}

    def reset(self) -> None:
        self.users.clear()

    def members(self, attribute: str) -> set[str]:
        """The external ids whose `attribute` is true: the Braze segment filtering on it."""
        with self.lock:
            return self.members_of(self.state(), attribute)

    @staticmethod
    def members_of(state: dict[str, Any], attribute: str) -> set[str]:
        """`members` computed from a `state()` (of this process's stand-in or another's)."""
        return {external_id for external_id, attributes in state["users"].items() if attributes.get(attribute) is True}

    # -- rate limit ------------------------------------------------------------------------

    def rate_headers(self, remaining: int, reset_epoch: float) -> dict[str, str]:
        limit = self.window.limit if self.window else RATE_LIMIT[0]
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(reset_epoch))}

    def throttle_answer(self, wait_s: float, reset_epoch: float) -> Response:
        return Response(429, {"message": "Too Many Requests"}, self.rate_headers(0, reset_epoch))

    def window_end(self, announced_at: float, wait_s: float, reset_epoch: float) -> float:
        # The 429 names the epoch second the window resets (rounded up): a client that comes
        # back at that second waited as told, even when it is a few ms short of `wait_s`
        # after this answer left (the stand-in answers a little after the request arrived).
        return math.ceil(reset_epoch)

    # -- users/track -----------------------------------------------------------------------

    def track(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            # Braze names the key it refused; this stand-in repeats it only with `echo_credentials`.
            return Response(401, {"message": "Invalid API key: the key is missing or not valid for users.track"
                                             + self.presented(request)})
        body = request.json()
        objects = body.get("attributes") if isinstance(body, dict) else None
        if not isinstance(objects, list) or not objects:
            return Response(400, {"message": NO_VALID_DATA, "errors": []})
        if len(objects) > self.max_batch:
            return Response(400, {"message": "Max Input Length Exceeded", "errors": [
                {"type": f"'attributes' holds {len(objects)} objects; at most {self.max_batch} are allowed",
                 "input_array": "attributes"}]})
        errors, valid = [], []
        for index, user in enumerate(objects):
            reason = self._refusal(user)
            if reason:
                errors.append({"type": reason, "input_array": "attributes", "index": index})
            else:
                valid.append(user)
        if not valid:
            return Response(400, {"message": NO_VALID_DATA, "errors": errors})
        with self.lock:
            for user in valid:
                _merge(self.users.setdefault(user["external_id"], {}), user)
        answer: dict[str, Any] = {"message": "success", "attributes_processed": len(valid)}
        if errors:
            answer["errors"] = errors
        return Response(201, answer)

    def _refusal(self, user: Any) -> str | None:
        """Why Braze would refuse this attributes object, or None."""
        if not isinstance(user, dict):
            return "Attributes object must be a JSON object"
        external_id = user.get("external_id")
        if not isinstance(external_id, str) or not external_id.strip():
            return "'external_id' is required"
        email = user.get("email")
        if email is not None and (not email_is_valid(email) or email.lower() in self.refuse_emails):
            return "Invalid email address"
        for name, value in user.items():
            if isinstance(value, dict) and set(value) <= {"add", "remove"} and not all(
                    isinstance(items, list) for items in value.values()):
                return f"Invalid array operation on '{name}'"
        return None


def _merge(attributes: dict[str, Any], user: dict[str, Any]) -> None:
    """Upsert one attributes object: null removes, {"add"/"remove": [...]} edits an array."""
    for name, value in user.items():
        if name == "external_id":
            continue
        if value is None:
            attributes.pop(name, None)
        elif isinstance(value, dict) and value and set(value) <= {"add", "remove"}:
            current = attributes.get(name)
            items = list(current) if isinstance(current, list) else []
            items += [item for item in value.get("add", []) if item not in items]
            attributes[name] = [item for item in items if item not in value.get("remove", [])]
        else:
            attributes[name] = value
