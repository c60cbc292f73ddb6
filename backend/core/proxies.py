"""The real client address behind reverse proxies, believing X-Forwarded-For only from trusted peers."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from common.hosts import Network, trusted_networks
from common.hosts import is_trusted as _trusted

__all__ = ["Network", "client_address", "trusted_networks"]


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
