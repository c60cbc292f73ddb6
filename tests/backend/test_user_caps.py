"""Per-user caps, each a setting with a clear error: conversations per user, messages per conversation
(on every write path), imports per hour, web searches per day (counted in usage, so aliases cannot
spend the Tavily credit). A backend of its own with small caps, on the shared llama-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from common.process import ManagedProcess
from tests.conftest import TAVILY_KEY, backend_settings, start_backend
from tests.support.graphql import Api, Session
from tests.support.tiny_model import TinyModel

CONVERSATIONS = 3
MESSAGES = 4
IMPORTS = 2
SEARCHES = 2
CREATE = 'mutation { createConversation(title: "t") { id } }'
IMPORT = "mutation($d: String!) { importConversation(data: $d) { id } }"
LIMIT = "LIMIT_REACHED"
TOO_MANY_CONVERSATIONS = (
    f"at most {CONVERSATIONS} conversations per user (CHAKOR_MAX_CONVERSATIONS_PER_USER); delete some first"
)
TOO_MANY_IMPORTS = f"at most {IMPORTS} imports per hour (CHAKOR_IMPORTS_PER_HOUR); try again later"
TOO_MANY_SEARCHES = (
    f"at most {SEARCHES} web searches per day (CHAKOR_WEB_SEARCHES_PER_DAY); it resets at 00:00 UTC"
)
FULL = (
    f"this conversation holds {MESSAGES} messages, at most {MESSAGES} "
    "(CHAKOR_MAX_MESSAGES_PER_CONVERSATION); start a new conversation"
)


@pytest.fixture(scope="module")
async def capped(
    mongo_uri: str, llama_server: str, tiny_model: TinyModel, fake_tavily: str, logs_dir: Path
) -> AsyncIterator[tuple[Api, AsyncDatabase]]:
    """A backend with caps small enough to reach, on a database of its own."""
    settings = backend_settings(
        mongo_uri,
        llama_server,
        tiny_model,
        db_name="chakor_caps",
        max_conversations_per_user=CONVERSATIONS,
        max_messages_per_conversation=MESSAGES,
        imports_per_hour=IMPORTS,
        web_searches_per_day=SEARCHES,
        tavily_api_key=TAVILY_KEY,
        tavily_base_url=fake_tavily,
    )
    process: ManagedProcess = start_backend(settings, logs_dir / "caps")
    client: AsyncMongoClient = AsyncMongoClient(settings.database_uri, tz_aware=True)
    try:
        async with httpx.AsyncClient(base_url=settings.backend_url, timeout=60) as http:
            ws_url = settings.graphql_url.replace("http://", "ws://", 1)
            yield Api(http, ws_url), client[settings.db_name]
    finally:
        await client.close()
        process.stop()


def _export(messages: int, title: str = "imported") -> str:
    turns = [
        {
            "id": f"m{i}",
            "parentId": f"m{i - 1}" if i else None,
            "role": "assistant" if i % 2 else "user",
            "content": "x",
        }
        for i in range(messages)
    ]
    return json.dumps({"format": "chakor.conversation", "version": 1, "title": title, "messages": turns})


async def _conversations(db: AsyncDatabase, user: Session) -> int:
    return await db.conversations.count_documents({"user_id": ObjectId(user.id)})


async def test_conversations_per_user(capped: tuple[Api, AsyncDatabase]) -> None:
    api, db = capped
    user = await api.register()
    for _ in range(CONVERSATIONS):
        await api.data(CREATE, token=user.access_token)
    error = await api.error(CREATE, token=user.access_token)
    assert (error["message"], error["extensions"]["code"]) == (TOO_MANY_CONVERSATIONS, LIMIT)
    error = await api.error(IMPORT, {"d": _export(2)}, user.access_token)
    assert error["message"] == TOO_MANY_CONVERSATIONS
    events = await api.chat(user, content="a new conversation", maxTokens=1)
    assert events == [{"__typename": "ChatError", "code": LIMIT, "message": TOO_MANY_CONVERSATIONS}]
    assert await _conversations(db, user) == CONVERSATIONS
    assert await db.messages.count_documents({"user_id": ObjectId(user.id)}) == 0
    # the refused import was not counted against the imports of this hour
    counters = await db.window_counters.find({"user_id": ObjectId(user.id)}).to_list()
    assert [c["used"] for c in counters] == [0]


async def test_parallel_creations_cannot_pass_the_cap(capped: tuple[Api, AsyncDatabase]) -> None:
    api, db = capped
    user = await api.register()
    bodies = await asyncio.gather(*(api.call(CREATE, token=user.access_token) for _ in range(12)))
    made = [b for b in bodies if not b.get("errors")]
    refused = [b["errors"][0]["message"] for b in bodies if b.get("errors")]
    assert len(made) <= CONVERSATIONS and set(refused) == {TOO_MANY_CONVERSATIONS}
    assert await _conversations(db, user) == len(made)


async def test_imports_per_hour(capped: tuple[Api, AsyncDatabase]) -> None:
    api, db = capped
    user = await api.register()
    hour = datetime.now(UTC).hour
    bodies = await asyncio.gather(*(api.call(IMPORT, {"d": _export(2)}, user.access_token) for _ in range(6)))
    if datetime.now(UTC).hour != hour:
        pytest.skip("the imports straddled two UTC hours, each with its own count")
    assert sum(1 for b in bodies if not b.get("errors")) == IMPORTS
    refused = [b["errors"][0] for b in bodies if b.get("errors")]
    assert {(e["message"], e["extensions"]["code"]) for e in refused} == {(TOO_MANY_IMPORTS, LIMIT)}
    assert await _conversations(db, user) == IMPORTS


async def test_an_import_past_the_message_cap_is_refused(capped: tuple[Api, AsyncDatabase]) -> None:
    api, db = capped
    user = await api.register()
    error = await api.error(IMPORT, {"d": _export(MESSAGES + 1)}, user.access_token)
    assert (error["message"], error["extensions"]["code"]) == (
        f"the import holds {MESSAGES + 1} messages, a conversation at most {MESSAGES} "
        "(CHAKOR_MAX_MESSAGES_PER_CONVERSATION)",
        LIMIT,
    )
    assert await _conversations(db, user) == 0


async def test_every_write_path_refuses_a_message_past_the_cap(capped: tuple[Api, AsyncDatabase]) -> None:
    api, db = capped
    user = await api.register()
    first = await api.chat(user, content="first", maxTokens=1)
    conversation = first[0]["conversationId"]
    await api.chat(user, content="second", conversationId=conversation, maxTokens=1)
    stored = {"conversation_id": ObjectId(conversation)}
    assert await db.messages.count_documents(stored) == MESSAGES
    refusal = [{"__typename": "ChatError", "code": LIMIT, "message": FULL}]
    assert await api.chat(user, content="third", conversationId=conversation, maxTokens=1) == refusal
    assert (
        await api.chat(user, content="", conversationId=conversation, regenerate=True, maxTokens=1) == refusal
    )
    edit = first[0]["userMessageId"]
    assert (
        await api.chat(user, content="edited", conversationId=conversation, editOf=edit, maxTokens=1)
        == refusal
    )
    assert await db.messages.count_documents(stored) == MESSAGES


async def test_web_searches_per_day_are_counted_in_usage(
    capped: tuple[Api, AsyncDatabase], fake_tavily: str
) -> None:
    api, db = capped
    user = await api.register()
    cached = f"caps {user.id} cached"
    async with httpx.AsyncClient(base_url=fake_tavily) as tavily:
        before = len((await tavily.get("/_requests")).json())
        first = await api.data(f'{{ webSearch(query: "{cached}") {{ url }} }}', token=user.access_token)
        assert first["webSearch"]
        aliased = (
            "{ "
            + " ".join(f'q{i}: webSearch(query: "caps {user.id} {i}") {{ url }}' for i in range(5))
            + " }"
        )
        body = await api.call(aliased, token=user.access_token)
        sent = [r["body"]["query"] for r in (await tavily.get("/_requests")).json()[before:]]
    # at most the cap reaches Tavily; a search cut off mid-request when the refusal ended the operation
    # reaches it incomplete (the fake does not count it) but was counted in usage before it was sent
    assert sent[0] == cached and len(sent) <= SEARCHES
    # webSearch is non-null: a refusal nulls the whole answer, and each error is the cap's
    assert body["data"] is None and body["errors"]
    assert {(e["message"], e["extensions"]["code"]) for e in body["errors"]} == {(TOO_MANY_SEARCHES, LIMIT)}
    # cached results cost nothing: the first query, answered and cached, is answered again past the cap
    assert await db.search_cache.count_documents({"query": cached}) == 1
    again = await api.data(f'{{ webSearch(query: "{cached}") {{ url }} }}', token=user.access_token)
    assert again["webSearch"] == first["webSearch"]
    usage: dict[str, Any] = (await api.data("{ usage { webSearches } }", token=user.access_token))["usage"][0]
    assert usage == {"webSearches": SEARCHES}
    # a chat turn that would search says why it has no sources, and still answers
    events = await api.chat(user, content="otters", search="WEB", maxTokens=2)
    sources = next(e for e in events if e["__typename"] == "ChatSources")
    assert (sources["available"], sources["error"]) == (False, TOO_MANY_SEARCHES)
    assert events[-1]["__typename"] == "ChatDone"
