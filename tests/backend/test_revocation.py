"""Credentials that die take their sessions, keys and running answers with them.

A revoked API key ends the answers it started; a password change ends every answer, session and key
of the user; logout and refresh-token reuse end the user's access tokens at once (not 15 minutes
later). Running answers stream from the private stack's slow model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from backend.services.api_keys import KEY_REVOKED
from backend.services.auth import PASSWORD_CHANGED, REUSE_DETECTED
from tests.backend.conftest import PrivateStack
from tests.support.graphql import CHAT, PASSWORD, Api, Session

pytestmark = pytest.mark.slow
LONG = {"content": "hello there", "maxTokens": 1000, "temperature": 1.0}
ME = "{ me { id } }"
CREATE_KEY = 'mutation { createApiKey(name: "script") { secret key { id } } }'
REVOKE_KEY = "mutation($id: ID!) { revokeApiKey(id: $id) }"
CHANGE = "mutation($o: String!, $n: String!) { changePassword(oldPassword: $o, newPassword: $n) }"
REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }"
LOGOUT = "mutation($t: String!) { logout(refreshToken: $t) }"


@pytest.fixture(scope="module")
async def private_db(private_stack: PrivateStack) -> AsyncIterator[AsyncDatabase]:
    client: AsyncMongoClient = AsyncMongoClient(private_stack.settings.database_uri, tz_aware=True)
    yield client[private_stack.settings.db_name]
    await client.close()


async def create_key(api: Api, user: Session) -> tuple[str, str]:
    created = (await api.data(CREATE_KEY, None, user.access_token))["createApiKey"]
    return created["secret"], created["key"]["id"]


async def stream_until_revoked(api: Api, authorization: str, revoke: object) -> list[dict]:
    """Every event of a long answer, calling `revoke()` once two tokens have come."""
    events: list[dict] = []
    async for result in api.subscribe(CHAT, {"input": LONG}, authorization):
        events.append(result["chat"])
        if len(events) == 3:
            await revoke()  # type: ignore[operator]
    return events


async def stored_status(db: AsyncDatabase, message_id: str) -> str:
    for _ in range(100):
        message = await db.messages.find_one({"_id": ObjectId(message_id)})
        if message["status"] != "streaming":
            return str(message["status"])
        await asyncio.sleep(0.1)
    return "streaming"


async def test_revoking_a_key_ends_the_answers_it_started(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    user = await api.register()
    secret, key_id = await create_key(api, user)

    async def revoke() -> None:
        assert (await api.data(REVOKE_KEY, {"id": key_id}, user.access_token))["revokeApiKey"] is True

    events = await stream_until_revoked(api, f"Bearer {secret}", revoke)
    assert events[0]["__typename"] == "ChatStarted" and events[1]["__typename"] == "ChatToken"
    assert events[-1] == {"__typename": "ChatError", "code": "UNAUTHENTICATED", "message": KEY_REVOKED}
    assert await stored_status(private_db, events[0]["assistantMessageId"]) == "stopped"
    assert (await api.error(ME, token=secret))["message"] == "invalid or revoked API key"
    assert (await api.data(ME, token=user.access_token))["me"]["id"] == user.id  # the session lives on


async def test_a_password_change_ends_answers_sessions_and_keys(
    private_stack: PrivateStack, private_db: AsyncDatabase
) -> None:
    api = private_stack.api
    user = await api.register()
    secret, _ = await create_key(api, user)

    async def change() -> None:
        changed = await api.data(CHANGE, {"o": PASSWORD, "n": "brand new password"}, user.access_token)
        assert changed["changePassword"] is True

    events = await stream_until_revoked(api, user.authorization, change)
    assert events[-1] == {"__typename": "ChatError", "code": "UNAUTHENTICATED", "message": PASSWORD_CHANGED}
    assert await stored_status(private_db, events[0]["assistantMessageId"]) == "stopped"
    assert (await api.error(ME, token=user.access_token))["message"] == "access token revoked"
    assert (await api.error(ME, token=secret))["message"] == "invalid or revoked API key"
    assert await private_db.api_keys.count_documents({"user_id": ObjectId(user.id)}) == 0


async def test_logout_ends_the_users_access_tokens_and_keeps_keys(api: Api) -> None:
    user = await api.register()
    other = await api.login(user.email)  # a second session (another device)
    secret, _ = await create_key(api, user)
    assert (await api.data(LOGOUT, {"t": user.refresh_token}))["logout"] is True
    for token in (user.access_token, other.access_token):
        assert (await api.error(ME, token=token))["message"] == "access token revoked"
    renewed = (await api.data(REFRESH, {"t": other.refresh_token}))["refreshToken"]  # it signs in again
    assert (await api.data(ME, token=renewed["accessToken"]))["me"]["id"] == user.id
    assert (await api.data(ME, token=secret))["me"]["id"] == user.id


async def test_refresh_token_reuse_ends_access_tokens_and_keys(api: Api) -> None:
    user = await api.register()
    secret, _ = await create_key(api, user)
    rotated = (await api.data(REFRESH, {"t": user.refresh_token}))["refreshToken"]
    assert (await api.error(REFRESH, {"t": user.refresh_token}))["message"] == REUSE_DETECTED
    assert (await api.error(ME, token=rotated["accessToken"]))["message"] == "access token revoked"
    assert (await api.error(ME, token=secret))["message"] == "invalid or revoked API key"
