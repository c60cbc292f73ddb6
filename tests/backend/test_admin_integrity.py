"""Admin changes write their own field only, and deleting a user leaves nothing of theirs behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from beanie import init_beanie
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from backend.models import DOCUMENT_MODELS, Role, User
from backend.services import users
from tests.backend.conftest import PRIVATE_ADMIN, ROOT_ADMIN, PrivateStack
from tests.conftest import Backend
from tests.support.graphql import CHAT, PASSWORD, Api

CHANGE = "mutation($o: String!, $n: String!) { changePassword(oldPassword: $o, newPassword: $n) }"
CREATE_KEY = "mutation($n: String!) { createApiKey(name: $n) { secret } }"
DELETE_USER = "mutation($id: ID!) { deleteUser(userId: $id) }"
IMPORT = "mutation($d: String!) { importConversation(data: $d) { id } }"
LONG = {"content": "hello there", "maxTokens": 1000, "temperature": 1.0}
OWNED = (
    "conversations",
    "messages",
    "refresh_tokens",
    "api_keys",
    "usage_days",
    "stream_leases",
    "window_counters",
)


@pytest.fixture
async def beanie(backend: Backend) -> AsyncIterator[None]:
    """The admin service in this process, on the shared backend's database."""
    client: AsyncMongoClient = AsyncMongoClient(backend.settings.database_uri, tz_aware=True)
    await init_beanie(database=client[backend.settings.db_name], document_models=DOCUMENT_MODELS)
    yield
    await client.close()


async def test_admin_changes_cannot_undo_a_concurrent_password_change(
    api: Api, db: AsyncDatabase, beanie: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = await api.register()
    actor = await User.find_one({"email": ROOT_ADMIN})
    assert actor is not None
    stale = await User.get(ObjectId(victim.id))  # what an admin change read ...
    assert (await api.data(CHANGE, {"o": PASSWORD, "n": "a brand new passphrase"}, victim.access_token))[
        "changePassword"
    ]
    changed = await db.users.find_one({"_id": ObjectId(victim.id)})  # ... before the password changed

    async def read_before_the_change(user_id: str) -> Any:
        return stale

    monkeypatch.setattr(users, "get_user", read_before_the_change)
    await users.set_role(actor, victim.id, Role.ADMIN)
    await users.approve(victim.id)
    await users.set_disabled(actor, victim.id, False)
    stored = await db.users.find_one({"_id": ObjectId(victim.id)})
    assert stored["role"] == "admin" and stored["approved"] is True and stored["disabled"] is False
    assert (stored["password_hash"], stored["token_version"]) == (
        changed["password_hash"],
        changed["token_version"],
    )
    await api.login(victim.email, "a brand new passphrase")


async def test_deleting_a_user_stops_their_answer_and_leaves_nothing(private_stack: PrivateStack) -> None:
    api = private_stack.api
    admin, victim = await api.login(PRIVATE_ADMIN), await api.register()
    await api.data(CREATE_KEY, {"n": "laptop"}, victim.access_token)
    earlier = await api.chat(victim, content="hi", maxTokens=2)  # a usage row
    assert earlier[-1]["__typename"] == "ChatDone"
    imported = '{"format": "chakor.conversation", "version": 1, "title": "t", "messages": []}'
    await api.data(IMPORT, {"d": imported}, victim.access_token)  # an import counted this hour
    events: list[dict[str, Any]] = []
    deleted: asyncio.Future[dict[str, Any]] | None = None
    async for result in api.subscribe(CHAT, {"input": LONG}, victim.authorization):
        events.append(result["chat"])
        if len(events) == 3:
            deleted = asyncio.ensure_future(api.data(DELETE_USER, {"id": victim.id}, admin.access_token))
    assert deleted is not None and (await deleted)["deleteUser"] is True
    done = events[-1]
    assert (
        done["__typename"] == "ChatDone"
        and done["finishReason"] == "stopped"
        and done["tokensPredicted"] < 1000
    )
    await asyncio.sleep(1.0)  # room for any late write of the stopped answer (its usage)
    client: AsyncMongoClient = AsyncMongoClient(private_stack.settings.database_uri, tz_aware=True)
    try:
        db = client[private_stack.settings.db_name]
        owner = ObjectId(victim.id)
        assert await db.users.count_documents({"_id": owner}) == 0
        left = {name: await db[name].count_documents({"user_id": owner}) for name in OWNED}
        assert left == dict.fromkeys(OWNED, 0)
    finally:
        await client.close()
