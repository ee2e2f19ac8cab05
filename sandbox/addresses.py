"""The email syntax the vendor stand-ins accept, written apart from `shared.profiles` on purpose.

The exporter validates addresses with `shared.profiles.email_problem`; a stand-in that
reused it would agree with the exporter's bugs. This check is deliberately simpler and
independent: one @, a local part and a dotted domain with no empty dot-separated part
(so no leading, trailing or doubled dots), and no whitespace.
"""

from __future__ import annotations

__all__ = ["email_is_valid"]


def email_is_valid(address: object) -> bool:
    """True when a vendor would take `address` as an email address (see the module docstring)."""
    if not isinstance(address, str) or address.count("@") != 1 or any(c.isspace() for c in address):
        return False
    local, domain = address.split("@")
    return "" not in local.split(".") and "." in domain and "" not in domain.split(".")
