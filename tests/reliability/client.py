"""Lean clients of the real stack, shared by the reliability tests and the benchmarks.

GraphQL over HTTP (httpx), the `chat` subscription over graphql-transport-ws (plain `websockets`, so the
client adds as little per-token work as possible), and llama-server's `/completion` SSE stream.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from httpx_sse import aconnect_sse

PASSWORD = "correct horse battery staple"

REGISTER = """mutation($email: String!, $password: String!) {
  register(email: $email, password: $password) { accessToken refreshToken user { id } } }"""
LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { accessToken refreshToken } }"""
CONVERSATION = """query($id: ID!) {
  conversation(id: $id) { id title messages(last: 200) { id role content status } } }"""
CONVERSATIONS = "query { conversations(first: 50) { edges { node { id title } } } }"
CHAT = """subscription($input: ChatInput!) {
  chat(input: $input) {
    __typename
    ... on ChatStarted { conversationId assistantMessageId }
    ... on ChatToken { text }
    ... on ChatDone { messageId tokensPredicted finishReason }
    ... on ChatError { code message }
  } }"""


class GraphQLFailed(Exception):
    """The response carried GraphQL errors (or was not a GraphQL response)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e.get("message")) for e in errors))
        self.errors = errors

    @property
    def codes(self) -> list[str | None]:
        return [(e.get("extensions") or {}).get("code") for e in self.errors]


async def execute(
    http: httpx.AsyncClient,
    url: str,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """POST one operation; its `data`, or GraphQLFailed with the errors."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.post(url, json={"query": query, "variables": variables or {}}, headers=headers)
    try:
        body = response.json()
    except ValueError:
        raise GraphQLFailed([{"message": f"HTTP {response.status_code}: {response.text[:200]}"}]) from None
    if body.get("errors") or body.get("data") is None:
        raise GraphQLFailed(body.get("errors") or [{"message": f"HTTP {response.status_code}"}])
    return body["data"]


async def register(http: httpx.AsyncClient, url: str, email: str) -> str:
    """A new account's access token (`register` answers alike for every address; then `login`)."""
    await execute(http, url, REGISTER, {"email": email, "password": PASSWORD})
    return await login(http, url, email)


async def login(http: httpx.AsyncClient, url: str, email: str) -> str:
    data = await execute(http, url, LOGIN, {"email": email, "password": PASSWORD})
    return str(data["login"]["accessToken"])


async def conversation(
    http: httpx.AsyncClient, url: str, token: str, conversation_id: str
) -> dict[str, Any] | None:
    return (await execute(http, url, CONVERSATION, {"id": conversation_id}, token))["conversation"]


@dataclass
class Stream:
    """One streamed answer as a client saw it; times are `time.perf_counter()` seconds."""

    sent_at: float
    chunks: list[str] = field(default_factory=list)
    chunk_times: list[float] = field(default_factory=list)
    conversation_id: str | None = None
    message_id: str | None = None
    finish_reason: str | None = None
    tokens_predicted: int | None = None
    error: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def tokens(self) -> int:
        """Tokens generated: the server's count when it sent one (chunks may carry several tokens)."""
        return self.tokens_predicted or len(self.chunks)

    @property
    def ttft(self) -> float:
        """Seconds from sending the request to the first token."""
        return self.chunk_times[0] - self.sent_at

    @property
    def answer_seconds(self) -> float:
        """Seconds from sending the request to the last token (what a user waits for a whole answer)."""
        return self.chunk_times[-1] - self.sent_at


class ChatSocket:
    """One authenticated graphql-transport-ws connection running one chat at a time."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self._ws = connection
        self._ids = itertools.count(1)

    async def chat(self, content: str, **options: Any) -> Stream:
        """Run a chat turn to its end; `options` are further ChatInput fields (camelCase)."""
        return await self.receive(await self.send(content, **options))

    async def send(self, content: str, **options: Any) -> Stream:
        """Start a chat turn; `receive` reads its events."""
        payload = {"query": CHAT, "variables": {"input": {"content": content, **options}}}
        message = json.dumps({"id": str(next(self._ids)), "type": "subscribe", "payload": payload})
        stream = Stream(sent_at=time.perf_counter())
        await self._ws.send(message)
        return stream

    async def receive(self, stream: Stream, first_token_only: bool = False) -> Stream:
        """Read events into `stream` until the turn completes (or its first token, if asked)."""
        while not (first_token_only and stream.chunks):
            frame = json.loads(await self._ws.recv())
            kind = frame.get("type")
            if kind == "ping":
                await self._ws.send('{"type": "pong"}')
            elif kind == "error":  # graphql-transport-ws: `error` ends the operation, no `complete` follows
                stream.error = json.dumps(frame.get("payload"))
                break
            elif kind == "next":
                _apply(stream, frame["payload"])
            elif kind == "complete":
                break
        return stream


def _apply(stream: Stream, payload: dict[str, Any]) -> None:
    event = (payload.get("data") or {}).get("chat")
    if event is None:
        stream.error = json.dumps(payload.get("errors"))
        return
    match event["__typename"]:
        case "ChatToken":
            stream.chunk_times.append(time.perf_counter())
            stream.chunks.append(event["text"])
        case "ChatStarted":
            stream.conversation_id = event["conversationId"]
            stream.message_id = event["assistantMessageId"]
        case "ChatDone":
            stream.finish_reason = event["finishReason"]
            stream.tokens_predicted = event["tokensPredicted"]
        case "ChatError":
            stream.error = f"{event['code']}: {event['message']}"


@asynccontextmanager
async def chat_socket(ws_url: str, token: str) -> AsyncIterator[ChatSocket]:
    """Connect, send `connection_init` with the bearer token and wait for the ack."""
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"], max_size=None) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise GraphQLFailed([{"message": f"no connection_ack: {ack}"}])
        yield ChatSocket(ws)


async def stream_completion(http: httpx.AsyncClient, llama_url: str, body: dict[str, Any]) -> Stream:
    """Stream llama-server's `/completion` directly, as the backend does."""
    stream = Stream(sent_at=time.perf_counter())
    request = {**body, "stream": True, "cache_prompt": True}
    async with aconnect_sse(http, "POST", f"{llama_url}/completion", json=request) as source:
        async for event in source.aiter_sse():
            data = json.loads(event.data)
            if data.get("content"):
                stream.chunk_times.append(time.perf_counter())
                stream.chunks.append(data["content"])
            if data.get("stop"):
                stream.tokens_predicted = int((data.get("timings") or {}).get("predicted_n", 0))
                stream.finish_reason = data.get("stop_type")
                break
    return stream


async def stream_chat_completion(
    http: httpx.AsyncClient, api_url: str, token: str, model: str, content: str, max_tokens: int
) -> Stream:
    """Stream one user message through the backend's OpenAI-compatible `POST /v1/chat/completions`,
    greedy, with the usage chunk; `api_url` is the backend's base URL (`.../v1`)."""
    stream = Stream(sent_at=time.perf_counter())
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{api_url}/chat/completions"
    async with aconnect_sse(http, "POST", url, json=body, headers=headers) as source:
        if source.response.status_code != 200:
            stream.error = f"HTTP {source.response.status_code}: {(await source.response.aread())[:200]!r}"
            return stream
        async for event in source.aiter_sse():
            if event.data == "[DONE]":
                break
            data = json.loads(event.data)
            if "error" in data:
                stream.error = json.dumps(data["error"])
                break
            for choice in data["choices"]:
                if choice["delta"].get("content"):
                    stream.chunk_times.append(time.perf_counter())
                    stream.chunks.append(choice["delta"]["content"])
                stream.finish_reason = choice["finish_reason"] or stream.finish_reason
            if data.get("usage"):
                stream.tokens_predicted = data["usage"]["completion_tokens"]
    return stream
