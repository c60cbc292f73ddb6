"""The real client address behind reverse proxies, believing X-Forwarded-For only from trusted peers."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """CHAKOR_TRUSTED_PROXIES entries (addresses or CIDR networks) as networks."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(connection: HTTPConnection, networks: tuple[Network, ...]) -> str:
    """The peer, or, when the peer is a trusted proxy, the nearest untrusted hop of X-Forwarded-For.

    The header is read right to left: each trusted proxy appends the address it saw, so the first
    untrusted entry from the right is the last one nobody could forge.
    """
    peer = connection.client.host if connection.client else "unknown"
    if not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in connection.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
