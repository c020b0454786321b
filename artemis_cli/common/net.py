"""Network rules the servers (`artemis web`, `artemis serve`) share."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); every other name or address,
    ``0.0.0.0`` included, is reachable from outside the machine (and so needs a key or a login)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
