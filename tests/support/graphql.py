"""A small GraphQL client for the backend tests: HTTP through httpx, subscriptions through gql."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from websockets.typing import Subprotocol

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PASSWORD = "correct horse battery"

AUTH_FIELDS = "accessToken refreshToken user { id email displayName role disabled createdAt }"
CHAT = """
subscription Chat($input: ChatInput!) {
  chat(input: $input) {
    __typename
    ... on ChatStarted { conversationId userMessageId assistantMessageId }
    ... on ChatSources { results { title url content score } available error }
    ... on ChatToken { text }
    ... on ChatDone { messageId tokensPredicted tokensPerSecond finishReason }
    ... on ChatError { code message }
  }
}
"""


@dataclass
class Session:
    """A signed-in user as the tests see them."""

    id: str
    email: str
    access_token: str
    refresh_token: str

    @property
    def authorization(self) -> str:
        return f"Bearer {self.access_token}"


class Api:
    """POSTs GraphQL to the backend and returns the JSON body (asserting HTTP 200)."""

    def __init__(self, http: httpx.AsyncClient, ws_url: str) -> None:
        self.http = http
        self.ws_url = ws_url

    async def raw(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def call(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        response = await self.raw(query, variables, token)
        assert response.status_code == 200, response.text
        return response.json()

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        body = await self.call(query, variables, token)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    async def error(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The single error of a failing call (its message and extensions.code)."""
        body = await self.call(query, variables, token)
        assert body.get("errors"), body
        assert len(body["errors"]) == 1, body["errors"]
        return body["errors"][0]

    async def register(
        self, email: str | None = None, password: str = PASSWORD, display_name: str | None = None
    ) -> Session:
        """A new account, signed in: `register` answers alike for every address, then `login`."""
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.test"
        data = await self.data(
            f"mutation($e: String!, $p: String!, $d: String) {{ register(email: $e, password: $p, displayName: $d) {{ {AUTH_FIELDS} }} }}",
            {"e": email, "p": password, "d": display_name},
        )
        assert data["register"] == {"accessToken": None, "refreshToken": None, "user": None}
        return await self.login(email, password)

    async def login(self, email: str, password: str = PASSWORD) -> Session:
        data = await self.data(
            f"mutation($e: String!, $p: String!) {{ login(email: $e, password: $p) {{ {AUTH_FIELDS} }} }}",
            {"e": email, "p": password},
        )
        return _session(data["login"])

    async def subscribe(
        self,
        query: str,
        variables: dict[str, Any],
        authorization: str | None,
        protocol: str = TRANSPORT_WS,
    ) -> AsyncIterator[dict[str, Any]]:
        """Results of a subscription; leaving the loop early unsubscribes."""
        transport = WebsocketsTransport(
            url=self.ws_url,
            init_payload={"Authorization": authorization} if authorization else {},
            subprotocols=[protocol],
        )
        async with Client(transport=transport, fetch_schema_from_transport=False) as session:
            async for result in session.subscribe(GraphQLRequest(query, variable_values=variables)):
                yield result

    async def connection_init_close_code(self, authorization: str) -> int | None:
        """The close code the server answers `connection_init` with (None when it acknowledges)."""
        async with websockets.connect(self.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
            await ws.send(
                json.dumps({"type": "connection_init", "payload": {"Authorization": authorization}})
            )
            with suppress(websockets.ConnectionClosed):
                if json.loads(await ws.recv())["type"] == "connection_ack":
                    return None
                await ws.recv()
            return ws.close_code

    async def chat(
        self, user: Session, protocol: str = TRANSPORT_WS, **chat_input: Any
    ) -> list[dict[str, Any]]:
        """Every event of one chat turn, to the end."""
        return [
            r["chat"] async for r in self.subscribe(CHAT, {"input": chat_input}, user.authorization, protocol)
        ]


def _session(payload: dict[str, Any]) -> Session:
    return Session(
        id=payload["user"]["id"],
        email=payload["user"]["email"],
        access_token=payload["accessToken"],
        refresh_token=payload["refreshToken"],
    )


def answer_text(events: list[dict[str, Any]]) -> str:
    """The streamed answer: the concatenated ChatToken texts."""
    return "".join(e["text"] for e in events if e["__typename"] == "ChatToken")
