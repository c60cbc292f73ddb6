"""Limits enforced before the work they guard, on a backend and a llama-server of their own.

llama-server's own counters (`/metrics`: prompt tokens evaluated, tokens generated) prove that a
refused chat turn or title never reached it. Logins, password changes and sign-ups are counted
before argon2 runs, so concurrent attempts cannot slip past the limit; the daily quota is reserved
at admission, so parallel turns cannot all pass it.

Every request names its client with X-Forwarded-For (the test connects from 127.0.0.1, a trusted
proxy), so each test has per-client limits of its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from websockets.typing import Subprotocol

from backend.services.api_keys import NOT_WITH_A_KEY
from backend.services.auth import BAD_CREDENTIALS
from backend.services.usage import today
from common.process import ManagedProcess
from common.settings import Settings
from tests.conftest import backend_settings, start_backend, start_llama_server
from tests.support.graphql import AUTH_FIELDS, CHAT, PASSWORD, TRANSPORT_WS, Api, Session, _session
from tests.support.tiny_model import TinyModel

QUOTA = 1_000_000  # the tests put a user next to it by writing their usage row
STREAMS = 4  # answers in progress per user
LOGIN_LIMIT = 5
SIGNUP_LIMIT = 3
LIMITED = re.compile(r"too many (login|sign-up) attempts; try again in \d+ s")
REGISTER = f"mutation($e: String!, $p: String!) {{ register(email: $e, password: $p) {{ {AUTH_FIELDS} }} }}"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
CHANGE = "mutation($o: String!, $n: String!) { changePassword(oldPassword: $o, newPassword: $n) }"
CREATE_KEY = 'mutation { createApiKey(name: "script") { secret } }'
TITLE = "mutation($id: ID!, $a: Boolean!) { generateTitle(id: $id, again: $a) { title } }"
TURN = {"content": "hello there", "maxTokens": 4}
TASK_STARTED = re.compile(r"launch_slot_: .* processing task")


@dataclass
class Stack:
    settings: Settings
    llama_url: str
    llama_log: Path
    api: Api
    db: AsyncDatabase

    async def post(
        self, query: str, variables: dict[str, Any], client: str, token: str | None = None
    ) -> dict:
        headers = {"X-Forwarded-For": client}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.api.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def user(self) -> Session:
        """A new account, registered from a client address of its own."""
        source, variables = client(), {"e": f"u-{uuid.uuid4().hex[:10]}@example.test", "p": PASSWORD}
        assert not (await self.post(REGISTER, variables, source)).get("errors")
        body = await self.post(
            f"mutation($e: String!, $p: String!) {{ login(email: $e, password: $p) {{ {AUTH_FIELDS} }} }}",
            variables,
            source,
        )
        return _session(body["data"]["login"])

    def work(self) -> tuple[float, float, int]:
        """llama-server's prompt tokens evaluated and tokens generated so far (`/metrics`), and the
        tasks its slots started on (its log: one line per task, even one cancelled at once)."""
        text = httpx.get(f"{self.llama_url}/metrics", timeout=10).text
        found = {name: float(v) for name, v in re.findall(r"^llamacpp:(\w+_total) ([\d.e+]+)$", text, re.M)}
        tasks = len(TASK_STARTED.findall(self.llama_log.read_text(errors="replace")))
        return found["prompt_tokens_total"], found["tokens_predicted_total"], tasks

    async def usage(self, user: Session) -> dict:
        row = await self.db.usage_days.find_one({"user_id": ObjectId(user.id), "day": today()})
        return row or {}

    async def set_used(self, user: Session, tokens: int) -> None:
        await self.db.usage_days.update_one(
            {"user_id": ObjectId(user.id), "day": today()}, {"$set": {"tokens_in": tokens}}, upsert=True
        )


def client() -> str:
    """A client address no other test uses."""
    n = uuid.uuid4().int
    return f"10.{n % 250}.{n // 250 % 250}.{n // 62500 % 250 + 1}"


@pytest.fixture(scope="module")
def llama(tiny_model: TinyModel, logs_dir: Path) -> Iterator[ManagedProcess]:
    """A llama-server no other test talks to, so its counters move only for this module."""
    process = start_llama_server(tiny_model.gguf_path, logs_dir / "admission")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
async def stack(
    mongo_uri: str, llama: ManagedProcess, tiny_model: TinyModel, logs_dir: Path
) -> AsyncIterator[Stack]:
    assert llama.health_url is not None
    llama_url = llama.health_url.removesuffix("/health")
    settings = backend_settings(
        mongo_uri,
        llama_url,
        tiny_model,
        db_name=f"chakor_admission_{uuid.uuid4().hex[:8]}",
        daily_token_quota=QUOTA,
        max_concurrent_streams_per_user=STREAMS,
        login_max_attempts=LOGIN_LIMIT,
        login_window_seconds=3600,
        signup_max_attempts=SIGNUP_LIMIT,
        signup="open",
    )
    process = start_backend(settings, logs_dir / "admission")
    database: AsyncMongoClient = AsyncMongoClient(settings.database_uri, tz_aware=True)
    try:
        async with httpx.AsyncClient(base_url=settings.backend_url, timeout=120) as http:
            ws_url = settings.graphql_url.replace("http://", "ws://", 1)
            api = Api(http, ws_url)
            yield Stack(settings, llama_url, llama.log_path, api, database[settings.db_name])
    finally:
        await database.close()
        process.stop()


async def chat(stack: Stack, user: Session, **turn: Any) -> list[dict]:
    return await stack.api.chat(user, **{**TURN, **turn})


async def chat_after_disabling(stack: Stack, user: Session) -> dict:
    """The first message a chat gets on a connection opened (and acknowledged) while the account
    was enabled, sent after an admin disabled it (its access token still verifies)."""
    init = {"type": "connection_init", "payload": {"Authorization": user.authorization}}
    async with websockets.connect(stack.api.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await stack.db.users.update_one({"_id": ObjectId(user.id)}, {"$set": {"disabled": True}})
        payload = {"query": CHAT, "variables": {"input": TURN}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        first = json.loads(await ws.recv())
    await stack.db.users.update_one({"_id": ObjectId(user.id)}, {"$set": {"disabled": False}})
    return first


async def test_refused_turns_and_titles_never_reach_llama_server(stack: Stack) -> None:
    user = await stack.user()
    first = await chat(stack, user)  # a conversation to title, and proof the counters move
    assert first[-1]["__typename"] == "ChatDone"
    conversation = first[0]["conversationId"]
    before = stack.work()
    owner = ObjectId(user.id)

    # stream limit: every slot of the user's is held (by answers on another backend)
    expires = datetime.now(UTC) + timedelta(hours=1)
    held = [
        {"_id": f"{user.id}:{slot}", "user_id": owner, "backend_id": "elsewhere", "expires_at": expires}
        for slot in range(STREAMS)
    ]
    await stack.db.stream_leases.insert_many(held)
    turns = await asyncio.gather(*(chat(stack, user) for _ in range(6)))
    assert [t[-1].get("code") for t in turns] == ["RATE_LIMITED"] * 6
    limited = await stack.post(TITLE, {"id": conversation, "a": True}, client(), user.access_token)
    assert limited["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    await stack.db.stream_leases.delete_many({"user_id": owner})

    # quota used up
    await stack.set_used(user, QUOTA)
    assert (await chat(stack, user))[-1]["code"] == "QUOTA_EXCEEDED"
    spent = await stack.post(TITLE, {"id": conversation, "a": True}, client(), user.access_token)
    assert spent["errors"][0]["extensions"]["code"] == "QUOTA_EXCEEDED"
    await stack.set_used(user, 0)

    # account disabled (its access token still verifies)
    refused = await chat_after_disabling(stack, user)
    assert refused["payload"]["errors"][0]["message"] == "account disabled"

    assert stack.work() == before, "a refused turn or title made llama-server work"
    assert (await stack.usage(user))["reserved"] == 0
    assert (await stack.db.stream_leases.count_documents({"user_id": owner})) == 0
    assert (await chat(stack, user))[-1]["__typename"] == "ChatDone"
    after = stack.work()
    assert after[0] > before[0] and after[2] == before[2] + 1


async def test_parallel_turns_cannot_overshoot_the_quota(stack: Stack) -> None:
    user = await stack.user()
    await stack.set_used(user, QUOTA - 1)  # one token short: one more turn may start, never more
    turns = await asyncio.gather(*(chat(stack, user) for _ in range(STREAMS)))
    ends = sorted(t[-1].get("code") or t[-1]["__typename"] for t in turns)
    assert ends == ["ChatDone"] + ["QUOTA_EXCEEDED"] * (STREAMS - 1)
    row = await stack.usage(user)
    done = next(t for t in turns if t[-1]["__typename"] == "ChatDone")
    assert row["reserved"] == 0 and row["answers"] == 1
    assert row["tokens_out"] == done[-1]["tokensPredicted"] and row["tokens_in"] > QUOTA - 1


async def test_a_title_is_generated_once_counted_and_again_on_request(stack: Stack) -> None:
    user = await stack.user()
    conversation = (await chat(stack, user))[0]["conversationId"]
    before, used = stack.work(), await stack.usage(user)
    titled = await stack.post(TITLE, {"id": conversation, "a": False}, client(), user.access_token)
    assert not titled.get("errors"), titled
    once, counted = stack.work(), await stack.usage(user)
    assert once[0] > before[0] and counted["answers"] == used["answers"] + 1
    assert counted["tokens_in"] > used["tokens_in"] and counted["reserved"] == 0
    aliases = " ".join(f'a{i}: generateTitle(id: "{conversation}") {{ title }}' for i in range(20))
    repeated = await stack.post(f"mutation {{ {aliases} }}", {}, client(), user.access_token)
    assert not repeated.get("errors") and len(repeated["data"]) == 20
    assert stack.work() == once and (await stack.usage(user)) == counted
    again = await stack.post(TITLE, {"id": conversation, "a": True}, client(), user.access_token)
    assert not again.get("errors") and stack.work()[0] > once[0]
    assert (await stack.usage(user))["answers"] == counted["answers"] + 1


async def login_outcomes(stack: Stack, email: str, password: str, count: int, source: str) -> list[str]:
    """The messages of `count` logins sent at once (an error's message; "ok" for a success)."""

    async def one() -> str:
        body = await stack.post(LOGIN, {"e": email, "p": password}, source)
        return str(body["errors"][0]["message"]) if body.get("errors") else "ok"

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def test_concurrent_logins_are_counted_before_the_password_is_verified(stack: Stack) -> None:
    user = await stack.user()
    outcomes = await login_outcomes(stack, user.email, "wrong password", 25, client())
    verified = outcomes.count(BAD_CREDENTIALS)
    assert 1 <= verified <= LOGIN_LIMIT, outcomes
    assert all(o == BAD_CREDENTIALS or LIMITED.fullmatch(o) for o in outcomes), outcomes
    assert len([o for o in outcomes if LIMITED.fullmatch(o)]) >= 25 - LOGIN_LIMIT
    assert await login_outcomes(stack, user.email, PASSWORD, 1, client()) != ["ok"]  # the account's limit


async def test_a_successful_login_keeps_the_failures_before_it(stack: Stack) -> None:
    user, source = await stack.user(), client()
    assert await login_outcomes(stack, user.email, "wrong password", 1, source) == [BAD_CREDENTIALS]
    assert await login_outcomes(stack, user.email, "wrong password", 1, source) == [BAD_CREDENTIALS]
    assert await login_outcomes(stack, user.email, PASSWORD, 1, source) == ["ok"]
    for _ in range(LOGIN_LIMIT - 2):
        assert await login_outcomes(stack, user.email, "wrong password", 1, source) == [BAD_CREDENTIALS]
    [limited] = await login_outcomes(stack, user.email, PASSWORD, 1, source)
    assert LIMITED.fullmatch(limited), limited


async def test_change_password_is_counted_like_a_login_and_refused_to_api_keys(stack: Stack) -> None:
    user, source = await stack.user(), client()
    key = (await stack.post(CREATE_KEY, {}, source, user.access_token))["data"]["createApiKey"]["secret"]
    by_key = await stack.post(CHANGE, {"o": PASSWORD, "n": "brand new password"}, source, key)
    assert by_key["errors"][0]["message"] == NOT_WITH_A_KEY
    guesses = await asyncio.gather(
        *(
            stack.post(CHANGE, {"o": f"guess {i}", "n": "brand new password"}, source, user.access_token)
            for i in range(8)
        )
    )
    messages = [g["errors"][0]["message"] for g in guesses]
    assert 1 <= messages.count("current password is wrong") <= LOGIN_LIMIT, messages
    assert all(m == "current password is wrong" or LIMITED.fullmatch(m) for m in messages), messages
    [login] = await login_outcomes(stack, user.email, PASSWORD, 1, client())
    assert LIMITED.fullmatch(login), login  # the guesses count against the account's logins too


async def test_sign_ups_are_limited_per_client(stack: Stack) -> None:
    source = client()

    async def sign_up() -> dict:
        return await stack.post(
            REGISTER, {"e": f"s-{uuid.uuid4().hex[:10]}@example.test", "p": PASSWORD}, source
        )

    made = await asyncio.gather(*(sign_up() for _ in range(SIGNUP_LIMIT + 3)))
    refused = [m["errors"][0]["message"] for m in made if m.get("errors")]
    assert len(refused) == 3 and all(LIMITED.fullmatch(m) for m in refused), refused
    assert all(m.get("errors") for m in [await sign_up()])
    assert not (await stack.post(REGISTER, {"e": "other-client@example.test", "p": PASSWORD}, client())).get(
        "errors"
    )
