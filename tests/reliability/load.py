"""A load run against a live backend: N chat streams plus M query loops, then every answer checked."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import websockets

from tests.reliability.client import (
    CONVERSATION,
    CONVERSATIONS,
    GraphQLFailed,
    Stream,
    chat_socket,
    conversation,
    execute,
    register,
)

MAX_TURNS = 90  # messages(last: 200) must still return every turn of a conversation
ANSWER_TOKENS = 32
ME = "query { me { id email } }"


@dataclass
class LoadReport:
    """What a load run did and found."""

    streams: int
    query_workers: int
    seconds: float
    chats: int = 0
    queries: int = 0
    errors: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    turns: list[Stream] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Scalars for logs and benchmark extra_info."""
        return {
            "streams": self.streams,
            "query_workers": self.query_workers,
            "seconds": self.seconds,
            "chats": self.chats,
            "queries": self.queries,
            "errors": len(self.errors),
            "lost": len(self.lost),
            "rss_before_mb": self.rss_before_mb,
            "rss_after_mb": self.rss_after_mb,
        }


@dataclass
class _User:
    email: str
    token: str
    conversation_id: str | None = None
    sent: list[str] = field(default_factory=list)
    received: list[Stream] = field(default_factory=list)


async def _chat_loop(ws_url: str, user: _User, deadline: float, report: LoadReport) -> None:
    try:
        await _chat_turns(ws_url, user, deadline, report)
    except (websockets.WebSocketException, OSError) as exc:
        report.errors.append(f"chat {user.email}: connection failed: {type(exc).__name__}: {exc}")


async def _chat_turns(ws_url: str, user: _User, deadline: float, report: LoadReport) -> None:
    async with chat_socket(ws_url, user.token) as socket:
        for turn in range(MAX_TURNS):
            if time.monotonic() >= deadline:
                return
            content = f"Turn {turn} of {user.email}: what does json.dumps do?"
            options: dict[str, Any] = {"maxTokens": ANSWER_TOKENS, "temperature": 0.0}
            if user.conversation_id:
                options["conversationId"] = user.conversation_id
            stream = await socket.chat(content, **options)
            report.chats += 1
            if stream.error or stream.finish_reason is None:
                report.errors.append(f"chat {user.email}#{turn}: {stream.error or 'no ChatDone'}")
                return
            user.conversation_id = stream.conversation_id
            user.sent.append(content)
            user.received.append(stream)


async def _query_loop(
    http: httpx.AsyncClient, url: str, user: _User, deadline: float, report: LoadReport
) -> None:
    for step in itertools.count():
        if time.monotonic() >= deadline:
            return
        try:
            if step % 3 == 0:
                await execute(http, url, ME, token=user.token)
            elif step % 3 == 1 or user.conversation_id is None:
                await execute(http, url, CONVERSATIONS, token=user.token)
            else:
                await execute(http, url, CONVERSATION, {"id": user.conversation_id}, user.token)
            report.queries += 1
        except (GraphQLFailed, httpx.HTTPError) as exc:
            report.errors.append(f"query {user.email}: {type(exc).__name__}: {exc}")


async def _check(http: httpx.AsyncClient, url: str, user: _User, report: LoadReport) -> None:
    """Every turn the client saw is stored exactly: user text, then the answer text, complete."""
    if user.conversation_id is None:
        return
    stored = await conversation(http, url, user.token, user.conversation_id)
    messages = (stored or {}).get("messages", [])
    expected = [m for sent, got in zip(user.sent, user.received, strict=True) for m in (sent, got.text)]
    if [m["content"] for m in messages] != expected:
        report.lost.append(
            f"{user.email}: stored {len(messages)} messages, expected {len(expected)} matching"
        )
    if any(m["status"] != "COMPLETE" for m in messages):
        report.lost.append(f"{user.email}: a message is not COMPLETE")


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def run_load(
    graphql_url: str, backend_pid: int, streams: int, query_workers: int, seconds: float, tag: str
) -> LoadReport:
    """Register `streams` users, run their chat loops and `query_workers` query loops for `seconds`, check."""
    report = LoadReport(streams=streams, query_workers=query_workers, seconds=seconds)
    ws_url = graphql_url.replace("http://", "ws://", 1)
    # Idle connections are dropped well before the server's 5 s keep-alive timeout could close them
    # under a request (the keep-alive race: a reset that is the client's doing, not the server's).
    limits = httpx.Limits(max_connections=query_workers + 16, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        emails = [f"load-{tag}-{i}@example.com" for i in range(streams)]
        tokens = await asyncio.gather(*(register(http, graphql_url, email) for email in emails))
        users = [_User(email, token) for email, token in zip(emails, tokens, strict=True)]
        report.rss_before_mb = _rss_mb(backend_pid)
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(_chat_loop(ws_url, user, deadline, report) for user in users),
            *(
                _query_loop(http, graphql_url, users[i % streams], deadline, report)
                for i in range(query_workers)
            ),
        )
        await asyncio.gather(*(_check(http, graphql_url, user, report) for user in users))
        report.rss_after_mb = _rss_mb(backend_pid)
    report.turns = [stream for user in users for stream in user.received]
    return report
