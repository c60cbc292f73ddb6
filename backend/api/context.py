"""The per-request GraphQL context: services, credentials and the (lazily loaded) caller."""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket
from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

from backend.models import User
from backend.services.auth import authenticate
from backend.services.container import AppServices


class Context(BaseContext):
    """Request context; over WebSockets credentials come from the `connection_init` payload."""

    def __init__(self, services: AppServices) -> None:
        super().__init__()
        self.services = services
        self._user: User | None = None

    @property
    def authorization(self) -> str | None:
        """The `Authorization` value of the HTTP request or of the WebSocket's `connection_init`."""
        params: Any = self.connection_params
        if isinstance(params, dict):
            value = params.get("Authorization") or params.get("authorization")
            if isinstance(value, str):
                return value
        connection = self.request
        return connection.headers.get("authorization") if isinstance(connection, HTTPConnection) else None

    @property
    def client_address(self) -> str:
        """The peer address (for login rate limiting)."""
        connection = self.request
        client = connection.client if isinstance(connection, HTTPConnection) else None
        return client.host if client else "unknown"

    async def user(self) -> User:
        """The authenticated, enabled caller, or AuthError.

        Checked once per HTTP request, and afresh for every operation of a long-lived WebSocket,
        so a disabled account is turned away at once.
        """
        if self._user is not None:
            return self._user
        user = await authenticate(self.authorization, self.services.settings)
        if not isinstance(self.request, WebSocket):
            self._user = user
        return user


Info = StrawberryInfo[Context, None]
