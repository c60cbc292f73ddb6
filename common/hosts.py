"""Which addresses are this host only (loopback) and which peers are trusted proxies.

One place for both, so the backend (X-Forwarded-For), the web app (X-Forwarded-Proto) and `chakor up`
(refusing a public bind with development defaults) read addresses the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); False for any other name or
    address, `0.0.0.0` and `::` included (they listen on every interface)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """CHAKOR_TRUSTED_PROXIES entries (addresses or CIDR networks) as networks."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether `address` (a peer or a forwarded hop) lies in one of `networks`; False when malformed."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)
