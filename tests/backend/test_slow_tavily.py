"""A Tavily that answers after the backend's search timeout: the chat goes on without sources."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from backend.services.search import SEARCH_TIMEOUT_SECONDS
from tests.conftest import Backend
from tests.support.graphql import Api, Session


@pytest.fixture
async def slow_tavily(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=backend.tavily_url) as client:
        await client.post("/_reset")  # the server is shared: only this test's searches are read below
        await client.post("/_control", json={"mode": "slow", "delay": SEARCH_TIMEOUT_SECONDS + 5})
        yield client
        await client.post("/_reset")


async def test_slow_tavily_times_out_and_the_chat_proceeds(
    api: Api, alice: Session, db: AsyncDatabase, slow_tavily: httpx.AsyncClient
) -> None:
    question = f"slow {uuid.uuid4().hex[:8]}"
    events = await api.chat(alice, content=question, webSearch=True, maxTokens=6)
    assert [e["__typename"] for e in events[:2]] == ["ChatStarted", "ChatSources"]
    assert events[1]["results"] == [] and events[1]["available"] is False
    assert events[1]["error"].startswith("web search unavailable: "), events[1]
    assert events[-1]["__typename"] == "ChatDone" and events[-1]["tokensPredicted"] == 6
    stored = await db.messages.find_one({"_id": ObjectId(events[0]["assistantMessageId"])})
    assert (stored["status"], stored["sources"], stored["sources_error"]) == (
        "complete",
        [],
        events[1]["error"],
    )
    assert [r["body"]["query"] for r in (await slow_tavily.get("/_requests")).json()] == [question]
