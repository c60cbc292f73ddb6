"""Answers that end correctly, on the private stack (slow model, one slot) and a second backend on
the same database: stop during prompt processing, deleted conversations, disabled users, expiring
tokens, killed backends, and stop / limits / login limits across backends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
import websockets
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from websockets.typing import Subprotocol

from common.process import free_port
from common.settings import Settings, load_settings
from tests.backend.conftest import PRIVATE_ADMIN, PrivateStack
from tests.conftest import JWT_SECRET, start_backend
from tests.support.graphql import CHAT, TRANSPORT_WS, Api, Session

pytestmark = pytest.mark.slow
LONG = {"content": "hello there", "maxTokens": 1000, "temperature": 1.0}
STOP = "mutation($id: ID!) { stopGeneration(messageId: $id) }"
DISABLE = "mutation($id: ID!, $d: Boolean!) { setUserDisabled(userId: $id, disabled: $d) { id } }"
DELETE = "mutation($id: ID!) { deleteConversation(id: $id) }"


@pytest.fixture(scope="module")
async def private_db(private_stack: PrivateStack) -> AsyncIterator[AsyncDatabase]:
    client: AsyncMongoClient = AsyncMongoClient(private_stack.settings.database_uri, tz_aware=True)
    yield client[private_stack.settings.db_name]
    await client.close()


@pytest.fixture(scope="module")
def second_settings(private_stack: PrivateStack) -> Settings:
    return load_settings(**{**private_stack.settings.model_dump(), "backend_port": free_port()})


@pytest.fixture(scope="module")
async def second(private_stack: PrivateStack, second_settings: Settings) -> AsyncIterator[Api]:
    """Another backend process on the private stack's database and llama-server."""
    process = start_backend(second_settings, private_stack.logs_dir / "second")
    try:
        async with httpx.AsyncClient(base_url=second_settings.backend_url, timeout=60) as http:
            yield Api(http, second_settings.graphql_url.replace("http://", "ws://", 1))
    finally:
        process.stop()


async def settled(db: AsyncDatabase, message_id: str) -> dict:
    for _ in range(300):
        message = await db.messages.find_one({"_id": ObjectId(message_id)})
        if message is None or message["status"] != "streaming":
            return message
        await asyncio.sleep(0.1)
    raise AssertionError(f"message {message_id} is still streaming")


async def test_stop_during_prompt_processing_aborts_upstream(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    user = await api.register()
    long_prompt = {**LONG, "content": " ".join(f"word{i % 50}" for i in range(180))}
    events: list[dict] = []
    async for result in api.subscribe(CHAT, {"input": long_prompt}, user.authorization):
        events.append(result["chat"])
        assert events[0]["__typename"] == "ChatStarted", events
        if len(events) == 1:  # started: llama-server is reading the prompt, no token yet
            message_id = events[0]["assistantMessageId"]
            assert (await api.data(STOP, {"id": message_id}, user.access_token))["stopGeneration"] is True
    assert [e["__typename"] for e in events] == ["ChatStarted", "ChatDone"], events
    assert events[1]["finishReason"] == "stopped" and events[1]["tokensPredicted"] == 0
    stored = await private_db.messages.find_one({"_id": ObjectId(message_id)})
    assert stored["status"] == "stopped" and stored["content"] == ""
    for _ in range(100):  # the closed request frees the slot (llama-server cancels the task)
        slots = httpx.get(f"http://127.0.0.1:{private_stack.llama_port}/slots").json()
        if not slots[0]["is_processing"]:
            break
        await asyncio.sleep(0.1)
    assert [slot["is_processing"] for slot in slots] == [False]


async def test_nothing_is_written_for_a_deleted_conversation(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    user = await api.register()
    events: list[dict] = []
    async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
        events.append(result["chat"])
        if len(events) == 3:
            started = events[0]
            assert (await api.data(DELETE, {"id": started["conversationId"]}, user.access_token))[
                "deleteConversation"
            ]
            await api.data(STOP, {"id": started["assistantMessageId"]}, user.access_token)
    assert events[-1]["__typename"] == "ChatDone" and events[-1]["finishReason"] == "stopped"
    conversation = ObjectId(started["conversationId"])
    assert await private_db.messages.count_documents({"conversation_id": conversation}) == 0
    assert await private_db.conversations.count_documents({"_id": conversation}) == 0


async def test_disabling_a_user_stops_their_running_answer(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    admin, user = await api.login(PRIVATE_ADMIN), await api.register()
    events: list[dict] = []
    async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
        events.append(result["chat"])
        if len(events) == 3:
            await api.data(DISABLE, {"id": user.id, "d": True}, admin.access_token)
    try:
        done = events[-1]
        assert done["__typename"] == "ChatDone" and done["finishReason"] == "stopped"
        assert done["tokensPredicted"] < 1000
        stored = await settled(private_db, events[0]["assistantMessageId"])
        assert stored["status"] == "stopped"
    finally:
        await api.data(DISABLE, {"id": user.id, "d": False}, admin.access_token)


async def test_a_connection_opened_before_its_account_was_disabled_starts_no_chat(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    admin, user = await api.login(PRIVATE_ADMIN), await api.register()
    init = {"type": "connection_init", "payload": {"Authorization": user.authorization}}
    async with websockets.connect(api.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await api.data(DISABLE, {"id": user.id, "d": True}, admin.access_token)
        try:
            # the token is still valid; the account check (run beside the prompt) refuses the turn,
            # and before the request's own error (an empty message)
            for operation, content in (("1", "hello"), ("2", " ")):
                payload = {"query": CHAT, "variables": {"input": {"content": content, "maxTokens": 4}}}
                await ws.send(json.dumps({"id": operation, "type": "subscribe", "payload": payload}))
                refused = json.loads(await ws.recv())
                assert refused["id"] == operation and refused["type"] == "next"
                [error] = refused["payload"]["errors"]
                assert error["message"] == "account disabled"
                assert error["extensions"]["code"] == "UNAUTHENTICATED"
                assert json.loads(await ws.recv()) == {"id": operation, "type": "complete"}
        finally:
            await api.data(DISABLE, {"id": user.id, "d": False}, admin.access_token)
    owner = ObjectId(user.id)
    assert await private_db.messages.count_documents({"user_id": owner}) == 0
    assert await private_db.conversations.count_documents({"user_id": owner}) == 0
    assert await private_db.stream_leases.count_documents({"user_id": owner}) == 0


def short_token(user: Session, seconds: float) -> str:
    now = datetime.now(UTC)
    claims = {"sub": user.id, "ver": 0, "typ": "access", "iat": now, "exp": now + timedelta(seconds=seconds)}
    return jwt.encode(claims, JWT_SECRET, "HS256")


async def test_an_expiring_token_ends_only_new_operations(private_stack: PrivateStack) -> None:
    api = private_stack.api
    user = await api.register()
    token = short_token(user, 3)
    async with websockets.connect(api.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": CHAT, "variables": {"input": LONG}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        started = json.loads(await ws.recv())["payload"]["data"]["chat"]
        assert started["__typename"] == "ChatStarted"
        await asyncio.sleep(3.5)  # the token expires while the first answer streams
        await ws.send(json.dumps({"id": "2", "type": "subscribe", "payload": payload}))
        second_error, later_tokens = None, 0
        while second_error is None or later_tokens < 3:
            message = json.loads(await ws.recv())
            if message.get("id") == "2":
                second_error = message
            elif message["type"] == "next" and second_error is not None:
                later_tokens += message["payload"]["data"]["chat"]["__typename"] == "ChatToken"
        await ws.send(json.dumps({"id": "1", "type": "complete"}))
    assert second_error["type"] == "error" and second_error["payload"][0]["message"] == "access token expired"
    assert later_tokens == 3  # the first answer kept streaming


async def test_answers_of_a_killed_backend_become_interrupted(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    user = await api.register()
    streamed: list[str] = []
    init = {"type": "connection_init", "payload": {"Authorization": user.authorization}}
    payload = {"query": CHAT, "variables": {"input": LONG}}
    async with websockets.connect(
        api.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)], close_timeout=1
    ) as ws:
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        started = json.loads(await ws.recv())["payload"]["data"]["chat"]
        await asyncio.sleep(2.5)  # past a partial flush (once a second)
        while len(streamed) < 2:
            event = json.loads(await ws.recv())["payload"]["data"]["chat"]
            streamed += [event["text"]] if event["__typename"] == "ChatToken" else []
        os.kill(private_stack.backend.pid or 0, signal.SIGKILL)
        private_stack.backend.popen.wait(timeout=30)  # type: ignore[union-attr]
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:  # what was sent before the kill
                event = json.loads(await ws.recv())["payload"]["data"]["chat"]
                streamed += [event["text"]] if event["__typename"] == "ChatToken" else []
    message_id = ObjectId(started["assistantMessageId"])
    assert (await private_db.messages.find_one({"_id": message_id}))["status"] == "streaming"
    private_stack.backend = start_backend(private_stack.settings, private_stack.logs_dir)
    stored = await private_db.messages.find_one({"_id": message_id})
    assert stored["status"] == "interrupted"
    assert stored["content"] and "".join(streamed).startswith(stored["content"])
    assert stored["error"] == "the server stopped while this answer was being generated"
    assert await private_db.stream_leases.count_documents({"user_id": ObjectId(user.id)}) == 0


async def test_stop_generation_reaches_the_backend_that_streams(
    private_stack: PrivateStack, second: Api, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    user = await api.register()
    events: list[dict] = []
    async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
        events.append(result["chat"])
        if len(events) == 3:  # asked on the other backend
            message_id = events[0]["assistantMessageId"]
            assert (await second.data(STOP, {"id": message_id}, user.access_token))["stopGeneration"] is True
    done = events[-1]
    assert done["__typename"] == "ChatDone" and done["finishReason"] == "stopped"
    assert (await settled(private_db, done["messageId"]))["status"] == "stopped"


async def test_stream_limit_counts_answers_on_every_backend(private_stack: PrivateStack, second: Api) -> None:
    api = private_stack.api
    user = await api.register()
    running = [asyncio.Event(), asyncio.Event()]
    release = asyncio.Event()

    async def hold(on: Api, started: asyncio.Event) -> None:
        async for _ in on.subscribe(CHAT, {"input": LONG}, user.authorization):
            started.set()
            await release.wait()
            return

    holders = [asyncio.create_task(hold(api, running[0])), asyncio.create_task(hold(second, running[1]))]
    try:
        await asyncio.gather(*(event.wait() for event in running))
        for on in (api, second):
            assert (await on.chat(user, content="third", maxTokens=2)) == [
                {
                    "__typename": "ChatError",
                    "code": "RATE_LIMITED",
                    "message": "too many answers in progress (at most 2 per user); wait or stop one",
                }
            ]
    finally:
        release.set()
        await asyncio.gather(*holders)


async def leases_of(db: AsyncDatabase, message_id: str) -> int:
    return await db.stream_leases.count_documents({"message_id": ObjectId(message_id)})


async def test_expired_leases_free_their_slots_for_other_answers(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    """Slots whose leases were not renewed (their backend stopped) serve new answers, and the answers
    that held them leave the new leases alone when they end (the embedded database drops expired
    leases at once, like a TTL sweep; tests/backend/test_stream_slots.py covers taking one over)."""
    api = private_stack.api
    user = await api.register()
    started: list[asyncio.Future[str]] = [asyncio.get_running_loop().create_future() for _ in range(3)]
    release = [asyncio.Event(), asyncio.Event()]

    async def hold(index: int) -> None:
        async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
            started[index].set_result(result["chat"]["assistantMessageId"])
            await release[min(index, 1)].wait()
            return

    holders = [asyncio.create_task(hold(0)), asyncio.create_task(hold(1))]
    try:
        old = await asyncio.gather(started[0], started[1])
        past = datetime.now(UTC) - timedelta(seconds=1)
        expired = await private_db.stream_leases.update_many(
            {"user_id": ObjectId(user.id)}, {"$set": {"expires_at": past}}
        )
        assert expired.modified_count == 2
        holders.append(asyncio.create_task(hold(2)))  # a third answer: both slots are taken but expired
        new = await started[2]
        assert [await leases_of(private_db, i) for i in (*old, new)] == [0, 0, 1]
        release[0].set()
        await holders[0]
        await settled(private_db, old[0])
        assert await leases_of(private_db, new) == 1  # the first answer's end left the new lease alone
    finally:
        for event in release:
            event.set()
        await asyncio.gather(*holders)
    for _ in range(100):
        if await private_db.stream_leases.count_documents({"user_id": ObjectId(user.id)}) == 0:
            break
        await asyncio.sleep(0.1)
    assert await private_db.stream_leases.count_documents({"user_id": ObjectId(user.id)}) == 0


async def test_login_rate_limit_counts_failures_on_every_backend(
    private_stack: PrivateStack, second: Api
) -> None:
    api = private_stack.api
    user = await api.register()
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    for attempt in range(5):  # CHAKOR_LOGIN_MAX_ATTEMPTS, alternating between the backends
        on = (api, second)[attempt % 2]
        assert (await on.error(login, {"e": user.email, "p": "wrong password"}))["message"] == (
            "invalid e-mail or password"
        )
    for on in (api, second):
        limited = await on.error(login, {"e": user.email, "p": "wrong password"})
        assert limited["extensions"]["code"] == "RATE_LIMITED"
