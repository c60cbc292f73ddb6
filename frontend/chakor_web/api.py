"""The app's only way to the backend: GraphQL over HTTP (httpx) and graphql-transport-ws (websockets)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import websockets
from websockets.typing import Subprotocol

from common.settings import get_settings

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_ids = itertools.count(1)


class ApiError(Exception):
    """A GraphQL error (or the backend being unreachable) with a stable code and a message for people."""

    def __init__(self, message: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    @property
    def unauthenticated(self) -> bool:
        return self.code == "UNAUTHENTICATED"


def graphql_url() -> str:
    return get_settings().graphql_url


def ws_url() -> str:
    return graphql_url().replace("http", "ws", 1)


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _headers(token: str | None, forwarded: str | None) -> dict[str, str]:
    """Authorization plus X-Forwarded-For: the browser's address, so the backend rate-limits the
    person and not this app (it believes the header only from its CHAKOR_TRUSTED_PROXIES)."""
    return {**_auth(token), **({"X-Forwarded-For": forwarded} if forwarded else {})}


def _raise_errors(errors: list[dict[str, Any]]) -> None:
    first = errors[0]
    code = (first.get("extensions") or {}).get("code", "BAD_REQUEST")
    raise ApiError(first.get("message", "request failed"), code)


async def _post(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any],
    headers: dict[str, str],
    upload: tuple[str, bytes] | None,
) -> httpx.Response:
    """POST the operation as JSON, or with `upload` (name, bytes) as `variables.file` in a GraphQL
    multipart request to the backend's upload route (with the header its CSRF check asks for)."""
    if upload is None:
        return await client.post(
            graphql_url(), json={"query": query, "variables": variables}, headers=headers
        )
    operations = {"query": query, "variables": {**variables, "file": None}}
    return await client.post(
        graphql_url() + "/upload",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (upload[0], upload[1], "application/octet-stream")},
        headers={**headers, "Apollo-Require-Preflight": "true"},
    )


async def execute(
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    forwarded: str | None = None,
    upload: tuple[str, bytes] | None = None,
) -> Any:
    """Run a query or mutation and return its `data`; raise ApiError on any GraphQL or network error.
    With `upload` (a file's name and bytes), the file is the operation's `$file`."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await _post(client, query, variables or {}, _headers(token, forwarded), upload)
    except httpx.HTTPError as exc:
        raise ApiError(f"the server cannot be reached ({type(exc).__name__})", "UNAVAILABLE") from None
    try:
        payload = response.json()
    except ValueError:
        raise ApiError(f"the server answered HTTP {response.status_code}", "UNAVAILABLE") from None
    if payload.get("errors"):
        _raise_errors(payload["errors"])
    return payload["data"]


async def subscribe(
    query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> AsyncGenerator[Any, None]:
    """Yield each `data` of a subscription (graphql-transport-ws); closing the iterator unsubscribes."""
    try:
        ws = await websockets.connect(
            ws_url(), subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=10
        )
    except (OSError, websockets.WebSocketException) as exc:
        raise ApiError(f"the server cannot be reached ({type(exc).__name__})", "UNAVAILABLE") from None
    async with ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": _auth(token)}))
        ack = json.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise ApiError("the server refused the connection", "UNAUTHENTICATED")
        op_id = str(next(_ids))
        payload = {"query": query, "variables": variables or {}}
        await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
        try:
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "next" and message.get("id") == op_id:
                    if message["payload"].get("errors"):
                        _raise_errors(message["payload"]["errors"])
                    yield message["payload"]["data"]
                elif kind == "error" and message.get("id") == op_id:
                    _raise_errors(message["payload"])
                elif kind == "complete" and message.get("id") == op_id:
                    return
        except websockets.ConnectionClosedError:
            raise ApiError("the connection to the server was lost", "UNAVAILABLE") from None
        finally:
            if ws.state is websockets.State.OPEN:
                await ws.send(json.dumps({"id": op_id, "type": "complete"}))
