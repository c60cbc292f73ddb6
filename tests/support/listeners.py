"""Which process serves a port (to tell a restarted server from one a killed process left behind)."""

from __future__ import annotations

import psutil


def listener(port: int) -> int | None:
    """The pid of the process listening on TCP `port`, or None."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None
