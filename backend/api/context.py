"""The per-request GraphQL context: services, credentials, the (lazily loaded) caller and DataLoaders."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from beanie import PydanticObjectId
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

from backend.core.proxies import client_address
from backend.models import User
from backend.services.auth import Caller, caller
from backend.services.container import AppServices
from backend.services.conversations import trees
from backend.services.tree import MessageTree


class Context(BaseContext):
    """Request context; over WebSockets credentials come from the `connection_init` payload."""

    def __init__(self, services: AppServices) -> None:
        super().__init__()
        self.services = services
        self._caller: Caller | None = None
        # WebSocket: one check per operation (each runs in its own task), never one per connection.
        self._operation_callers: weakref.WeakKeyDictionary[asyncio.Task[Any], Caller] = (
            weakref.WeakKeyDictionary()
        )
        # Message trees by conversation id: the conversations a field resolves for at once (a page of
        # `conversations { messages }`) share one query. Batches only, no cache: one WebSocket context
        # serves many operations, and a mutation may change messages a later field reads.
        self.message_trees: DataLoader[PydanticObjectId, MessageTree] = DataLoader(load_fn=trees, cache=False)

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
        """The client's address (for login rate limiting), through trusted proxies only."""
        connection = self.request
        if not isinstance(connection, HTTPConnection):
            return "unknown"
        return client_address(connection, self.services.trusted_proxies)

    async def caller(self, fresh: bool = False) -> Caller:
        """Who the credentials name (AuthError for a bad or expired token), their account check
        possibly still running: await `.user()` before acting for them.

        Checked once per HTTP request, and afresh for every operation of a long-lived WebSocket
        (`fresh` checks again), so an expired token or a disabled account is turned away from
        new operations at once.
        """
        if not isinstance(self.request, WebSocket):
            if self._caller is None or fresh:
                self._caller = await caller(self.authorization, self.services.settings)
            return self._caller
        task = asyncio.current_task()
        cached = self._operation_callers.get(task) if task is not None and not fresh else None
        if cached is not None:
            return cached
        found = await caller(self.authorization, self.services.settings)
        if task is not None:
            self._operation_callers[task] = found
        return found

    async def user(self, fresh: bool = False) -> User:
        """The authenticated, enabled, approved caller, or AuthError / ForbiddenError."""
        return await (await self.caller(fresh)).user()


Info = StrawberryInfo[Context, None]
