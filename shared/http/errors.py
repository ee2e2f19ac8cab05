"""The errors a destination meets, drawn as a tree in the package docstring (`shared.http`)."""

from __future__ import annotations

__all__ = ["AuthError", "DestinationError", "FatalError", "RetriableError"]


class DestinationError(Exception):
    """A destination cannot go on. `str(error)` is safe for logs and reports."""


class RetriableError(DestinationError):
    """The vendor was unavailable or throttling longer than the retry policy allows."""


class AuthError(DestinationError):
    """The vendor refused the credentials (after one refresh, where refreshing is possible)."""


class FatalError(DestinationError):
    """The vendor refused the request as a whole (4xx other than 401/429) or answered nonsense."""
