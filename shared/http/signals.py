"""Reading vendors' answers: their own error messages, and every throttling signal in use."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

from .errors import FatalError
from .transport import Response

__all__ = ["announced_wait", "json_body", "vendor_message"]


def vendor_message(response: Response, *keys: str) -> str:
    """The vendor's own error message from a JSON body (first of `keys` present), on one line
    (`HttpClient` cuts it short once the credentials it may quote are redacted)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        for key in keys:
            if body.get(key):
                text = str(body[key])
                break
    if not text:
        text = response.reason or ""
    return " ".join(text.split())


def announced_wait(response: Response, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the vendor asked us to wait, from any of the throttling signals in use, or None."""
    headers = response.headers
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        if value.replace(".", "", 1).isdigit():
            return float(value)
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now())
        except (TypeError, ValueError):
            pass
    for name in ("X-RateLimit-Reset", "X-Rate-Limit-Reset"):
        value = headers.get(name)
        if value:
            try:
                number = float(value)
            except ValueError:
                continue
            # Braze sends the epoch second the window resets; others send seconds to wait.
            return max(0.0, number - now()) if number > 1_000_000_000 else number
    if "json" in headers.get("Content-Type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("retryAfter"), (int, float)):
            return float(body["retryAfter"])
    return None


def json_body(response: Response, vendor: str) -> Any:
    """The JSON body of a 2xx answer; FatalError when the vendor answered something else."""
    try:
        return response.json()
    except ValueError:
        raise FatalError(f"{vendor} answered {response.status_code} without a JSON body") from None
