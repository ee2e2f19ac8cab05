"""HTTP to the vendors: the one retry, backoff and pacing mechanism every destination uses.

Error taxonomy (re-exported by `destinations.base`, where destinations meet it)::

    DestinationError          a destination cannot go on; the message is safe to show
    ├── RetriableError        429, 5xx, timeouts, dropped connections: retried here;
    │                         raised only when attempts or the time budget run out
    ├── AuthError             401 (after one credential refresh, where refresh exists)
    └── FatalError            any other 4xx for the whole request, or an unusable answer

What is retried and how long to wait:

- 429 and 5xx: wait what the vendor announced, in whichever form it uses (`Retry-After`
  in seconds or as a date; `X-RateLimit-Reset` / `X-Rate-Limit-Reset` as epoch seconds
  (Braze) or as seconds to wait; a problem body's `retryAfter` (Omnisend)), otherwise
  exponential backoff with jitter (a bare 429: Snapchat).
- An announced wait holds the shared `Pacer`, so no request of any thread goes out to
  that vendor during the throttle window it announced.
- Timeouts and connection errors: backoff and retry. The vendor may have applied the
  request already; every destination's writes are idempotent upserts, so resending is safe.

Messages never contain credentials: headers are never echoed, and a vendor's message is
stripped of every credential the request carried, as sent or encoded (`redacted`), then
cut short.
"""

from .auth import Credentials, RefreshingBearer, StaticKey, TokenSource
from .client import HttpClient, RequestStats, RetryPolicy, transport_for, without_maybe_applied
from .errors import AuthError, DestinationError, FatalError, RetriableError
from .pacing import Pacer, pacer_for
from .signals import announced_wait, json_body, vendor_message
from .transport import ConnectionProblem, Response, Transport

__all__ = [
    "AuthError",
    "ConnectionProblem",
    "Credentials",
    "DestinationError",
    "FatalError",
    "HttpClient",
    "Pacer",
    "RefreshingBearer",
    "RequestStats",
    "Response",
    "RetriableError",
    "RetryPolicy",
    "StaticKey",
    "TokenSource",
    "Transport",
    "announced_wait",
    "json_body",
    "pacer_for",
    "transport_for",
    "vendor_message",
    "without_maybe_applied",
]
