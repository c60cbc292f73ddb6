"""Interrupted answers on a private stack (slow model, one llama-server slot): stop, unsubscribe, kill -9."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.backend.conftest import PrivateStack
from tests.support.graphql import CHAT

pytestmark = pytest.mark.slow
# Sampled at temperature 1: greedy decoding of the random model gets stuck on byte tokens that never form
# valid UTF-8, which llama-server holds back, so nothing would stream.
LONG = {"content": "hello there", "maxTokens": 1000, "temperature": 1.0}


@pytest.fixture(scope="module")
async def private_db(private_stack: PrivateStack) -> AsyncIterator[AsyncDatabase]:
    client: AsyncMongoClient = AsyncMongoClient(private_stack.settings.database_uri, tz_aware=True)
    yield client[private_stack.settings.db_name]
    await client.close()


async def settled(db: AsyncDatabase, message_id: str) -> dict:
    """The message once it has left `streaming` (the backend finishes it asynchronously)."""
    for _ in range(300):
        message = await db.messages.find_one({"_id": ObjectId(message_id)})
        if message["status"] != "streaming":
            return message
        await asyncio.sleep(0.1)
    raise AssertionError(f"message {message_id} is still streaming")


def llama_log(stack: PrivateStack) -> str:
    return (stack.logs_dir / f"llama-server-{stack.llama_port}.log").read_text(errors="replace")


async def test_web_search_without_a_key_says_not_configured(private_stack: PrivateStack) -> None:
    api = private_stack.api
    user = await api.register()
    error = await api.error('{ webSearch(query: "x") { url } }', token=user.access_token)
    assert error["message"] == "web search is not configured (set CHAKOR_TAVILY_API_KEY)"
    events = await api.chat(user, content="hi", webSearch=True, maxTokens=2)
    assert events[1] == {
        "__typename": "ChatSources", "results": [], "available": False,
        "error": "web search is not configured (set CHAKOR_TAVILY_API_KEY)",
    }  # fmt: skip
    assert events[-1]["__typename"] == "ChatDone"


async def test_unsubscribe_mid_stream_stores_stopped_and_aborts_upstream(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    user = await api.register()
    cancels_before = llama_log(private_stack).count("cancel task")
    received: list[dict] = []
    async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
        received.append(result["chat"])
        if len(received) == 4:  # started + three tokens, then leave: the client unsubscribes
            break
    message = await settled(private_db, received[0]["assistantMessageId"])
    assert [e["__typename"] for e in received] == ["ChatStarted", *["ChatToken"] * 3], received
    streamed = "".join(e["text"] for e in received[1:])
    assert message["status"] == "stopped" and message["finish_reason"] == "stopped"
    assert message["content"].startswith(streamed)
    for _ in range(100):  # llama-server logs the cancelled task once it notices the closed stream
        if llama_log(private_stack).count("cancel task") > cancels_before:
            break
        await asyncio.sleep(0.1)
    assert llama_log(private_stack).count("cancel task") == cancels_before + 1
    slots = httpx.get(f"http://127.0.0.1:{private_stack.llama_port}/slots").json()
    assert [slot["is_processing"] for slot in slots] == [False]


async def test_stop_generation(private_stack: PrivateStack, private_db: AsyncDatabase) -> None:
    api = private_stack.api
    user, other = await api.register(), await api.register()
    stop = "mutation($id: ID!) { stopGeneration(messageId: $id) }"
    events: list[dict] = []
    async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
        events.append(result["chat"])
        if len(events) == 3:
            message_id = events[0]["assistantMessageId"]
            assert (await api.data(stop, {"id": message_id}, other.access_token))["stopGeneration"] is False
            assert (await api.data(stop, {"id": message_id}, user.access_token))["stopGeneration"] is True
    done = events[-1]
    assert done["__typename"] == "ChatDone" and done["finishReason"] == "stopped"
    # every ChatToken carries at least one token (tokens that queued during a send travel together)
    assert len(events) - 2 <= done["tokensPredicted"] < 1000
    message = await private_db.messages.find_one({"_id": ObjectId(done["messageId"])})
    assert message["status"] == "stopped"
    assert message["content"] == "".join(e["text"] for e in events if e["__typename"] == "ChatToken")
    assert (await api.data(stop, {"id": done["messageId"]}, user.access_token))["stopGeneration"] is False


async def test_concurrent_stream_limit_per_user(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    user = await api.register()
    earlier = (await api.chat(user, content="earlier", maxTokens=1))[0]["conversationId"]
    conversation = await private_db.conversations.find_one({"_id": ObjectId(earlier)})
    first_started, second_started, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold(started: asyncio.Event) -> dict:
        async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
            started.set()
            await release.wait()
            return result["chat"]
        raise AssertionError("no event")

    holders = [asyncio.create_task(hold(first_started)), asyncio.create_task(hold(second_started))]
    await first_started.wait()
    await second_started.wait()
    before = await private_db.messages.count_documents({"user_id": ObjectId(user.id)})
    limited = {
        "__typename": "ChatError",
        "code": "RATE_LIMITED",
        "message": "too many answers in progress (at most 2 per user); wait or stop one",
    }
    assert await api.chat(user, content="one more", maxTokens=2) == [limited]
    # nothing is written for a refused turn: the conversation keeps its active answer and its place
    assert await api.chat(user, content="and here", conversationId=earlier, maxTokens=2) == [limited]
    assert await private_db.messages.count_documents({"user_id": ObjectId(user.id)}) == before
    assert await private_db.conversations.count_documents({"user_id": ObjectId(user.id)}) == 3
    assert await private_db.conversations.find_one({"_id": ObjectId(earlier)}) == conversation
    release.set()
    started = [await task for task in holders]
    for event in started:
        assert (await settled(private_db, event["assistantMessageId"]))["status"] == "stopped"
    other = await api.register()  # another user is not limited by this one
    assert (await api.chat(other, content="hi", maxTokens=1))[-1]["__typename"] == "ChatDone"


async def test_llama_server_killed_mid_stream(private_stack: PrivateStack, private_db: AsyncDatabase) -> None:
    api = private_stack.api
    user = await api.register()
    events: list[dict] = []
    async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
        events.append(result["chat"])
        if len(events) == 3:
            private_stack.llama.kill()  # SIGKILL mid-answer
    error = events[-1]
    assert error["__typename"] == "ChatError" and error["code"] == "LLAMA_UNAVAILABLE"
    assert error["message"].startswith("llama-server failed mid-answer")
    streamed = "".join(e["text"] for e in events if e["__typename"] == "ChatToken")
    message = await private_db.messages.find_one({"_id": ObjectId(events[0]["assistantMessageId"])})
    assert message["status"] == "error"
    assert message["content"] == streamed and streamed
    assert message["error"] == error["message"]

    # The backend keeps serving, and says the llama-server is down.
    async with httpx.AsyncClient(base_url=private_stack.settings.backend_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await api.data("{ me { id } }", token=user.access_token))["me"]["id"] == user.id
    down = await api.chat(user, content="anyone there?", maxTokens=2)
    assert down[-1]["__typename"] == "ChatError" and down[-1]["code"] == "LLAMA_UNAVAILABLE"
    assert down[-1]["message"].startswith("no llama-server available")

    # Once llama-server is back (the supervisor restarts it), the next chat succeeds.
    private_stack.restart_llama()
    again = await api.chat(user, content="back?", maxTokens=3)
    assert again[-1]["__typename"] == "ChatDone" and again[-1]["tokensPredicted"] == 3


async def test_admin_sees_the_private_llama_server(private_stack: PrivateStack) -> None:
    api = private_stack.api
    admin = await api.login(private_admin(private_stack))
    status = await api.data(
        "{ serverStatus { llamaServers { url healthy slotsTotal } activeStreams } }", token=admin.access_token
    )
    assert status["serverStatus"]["llamaServers"] == [
        {"url": private_stack.settings.llama_url, "healthy": True, "slotsTotal": 1}
    ]
    assert status["serverStatus"]["activeStreams"] == 0


def private_admin(stack: PrivateStack) -> str:
    """An admin of the private stack's database, made here with the CLI (no earlier test needed)."""
    from tests.backend.test_cli import create_user_cli

    email = "private-admin@example.test"
    result = create_user_cli(stack.settings, email, "--admin")
    assert result.returncode == 0 or "already exists" in result.stdout, result.stdout + result.stderr
    return email


async def test_a_partial_answer_is_stored_while_it_streams(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    """The timed partial flush: the database holds a prefix of the answer before the answer ends."""
    api = private_stack.api
    user = await api.register()
    stop = "mutation($id: ID!) { stopGeneration(messageId: $id) }"
    events: list[dict] = []
    partial: str | None = None
    async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
        event = result["chat"]
        events.append(event)
        if event["__typename"] == "ChatToken" and partial is None:
            stored = await private_db.messages.find_one({"_id": ObjectId(events[0]["assistantMessageId"])})
            if stored["status"] == "streaming" and stored["content"]:
                partial = stored["content"]
                await api.data(stop, {"id": events[0]["assistantMessageId"]}, user.access_token)
    streamed = "".join(e["text"] for e in events if e["__typename"] == "ChatToken")
    assert partial is not None, "nothing was stored before the answer ended"
    # read while the answer was still `streaming`; the flush may be ahead of the client, never off its text
    assert streamed.startswith(partial)
    assert events[-1]["__typename"] == "ChatDone" and events[-1]["finishReason"] == "stopped"
    final = await settled(private_db, events[0]["assistantMessageId"])
    assert (final["status"], final["content"]) == ("stopped", streamed)
