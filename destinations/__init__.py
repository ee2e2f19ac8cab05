"""Destinations: one module per vendor, all of the same shape (see `base.py`).

This registry is the one place that lists them: adding a destination means adding its
module, its sandbox stand-in and its test file, and one line here.
"""

from __future__ import annotations

from shared.config import DestinationSpec

from .base import AuthError, Destination, DestinationError, FatalError, RetriableError, RowRejected
from .braze import Braze
from .campaign_monitor import CampaignMonitor
from .omnisend import Omnisend
from .snapchat import Snapchat

__all__ = [
    "DESTINATIONS",
    "SPECS",
    "AuthError",
    "Destination",
    "DestinationError",
    "FatalError",
    "RetriableError",
    "RowRejected",
    "destination_class",
]

DESTINATIONS: dict[str, type[Destination]] = {
    cls.SPEC.type: cls for cls in (Snapchat, Braze, Omnisend, CampaignMonitor)
}
SPECS: dict[str, DestinationSpec] = {type_: cls.SPEC for type_, cls in DESTINATIONS.items()}


def destination_class(type_: str) -> type[Destination]:
    """The Destination class for a connection type; KeyError names the known types."""
    try:
        return DESTINATIONS[type_]
    except KeyError:
        raise KeyError(f"unknown destination type {type_!r} (known: {', '.join(sorted(DESTINATIONS))})") from None
