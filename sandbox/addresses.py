"""The email syntax the vendor stand-ins accept, written apart from `shared.profiles` on purpose.

The exporter validates addresses with `shared.profiles.email_problem`; a stand-in that
reused it would agree with the exporter's bugs. This check is deliberately simpler and
independent: one @, a local part and a dotted domain with no empty dot-separated part
(so no leading, trailing or doubled dots), and no whitespace.
"""

from __future__ import annotations

import re

__all__ = ["email_is_valid"]


def email_is_valid(address: object) -> bool:
    """True when a vendor would take `address` as an email address (see the module docstring)."""
    return isinstance(address, str) and _ADDRESS.fullmatch(address) is not None


# Dot-separated non-empty parts of anything but "@", "." and whitespace (\s is str.isspace):
# one or more before the @, two or more after it. One regex: the stand-ins check every
# address of every batch, and a loop over characters cost more than the rest of an import.
_PART = r"[^@\s.]+"
_ADDRESS = re.compile(rf"{_PART}(?:\.{_PART})*@{_PART}(?:\.{_PART})+")
