"""API keys: shown once, stored hashed, work over HTTP and WebSocket with user rights, refused once revoked."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from common import REPO_ROOT
from tests.conftest import Backend
from tests.support.graphql import CHAT, Api, Session, answer_text

CREATE = (
    "mutation($n: String!) { createApiKey(name: $n) { secret key { id name prefix createdAt lastUsedAt } } }"
)
LIST = "{ apiKeys { id name prefix lastUsedAt } }"
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) }"
ME = "{ me { id email role } }"


async def create_key(api: Api, user: Session, name: str = "script") -> dict:
    return (await api.data(CREATE, {"n": name}, user.access_token))["createApiKey"]


async def test_key_is_shown_once_stored_hashed_and_works_over_http(
    api: Api, alice: Session, db: AsyncDatabase
) -> None:
    created = await create_key(api, alice, "  my laptop ")
    secret, key = created["secret"], created["key"]
    assert secret.startswith("chk_") and len(secret) > 40
    assert key["name"] == "my laptop" and key["prefix"] == secret[:12] and key["lastUsedAt"] is None
    stored = await db.api_keys.find_one({"_id": ObjectId(key["id"])})
    assert stored["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(stored)
    listed = (await api.data(LIST, None, alice.access_token))["apiKeys"]
    assert [(k["id"], k["prefix"]) for k in listed] == [(key["id"], secret[:12])]
    assert "secret" not in str(listed)

    me = (await api.data(ME, None, secret))["me"]
    assert me["id"] == alice.id
    assert (await api.data(LIST, None, alice.access_token))["apiKeys"][0]["lastUsedAt"] is not None


async def test_key_streams_a_chat_over_websocket_and_is_refused_once_revoked(
    api: Api, alice: Session
) -> None:
    created = await create_key(api, alice)
    secret = created["secret"]
    events = [
        r["chat"]
        async for r in api.subscribe(
            CHAT, {"input": {"content": "hello", "maxTokens": 4}}, f"Bearer {secret}"
        )
    ]
    assert events[0]["__typename"] == "ChatStarted" and events[-1]["__typename"] == "ChatDone"
    assert await api.connection_init_close_code(f"Bearer {secret}") is None
    conversation = await api.data(
        "query($id: ID!) { conversation(id: $id) { messages { content } } }",
        {"id": events[0]["conversationId"]},
        alice.access_token,
    )
    assert conversation["conversation"]["messages"][1]["content"] == answer_text(events)

    assert (await api.data(REVOKE, {"id": created["key"]["id"]}, alice.access_token))["revokeApiKey"] is True
    error = await api.error(ME, None, secret)
    assert (error["message"], error["extensions"]["code"]) == (
        "invalid or revoked API key",
        "UNAUTHENTICATED",
    )
    assert await api.connection_init_close_code(f"Bearer {secret}") == 4403
    error = await api.error(REVOKE, {"id": created["key"]["id"]}, alice.access_token)
    assert error["extensions"]["code"] == "NOT_FOUND"


async def test_an_admins_key_has_user_rights_and_keys_cannot_mint_keys(
    api: Api, admin: Session, alice: Session
) -> None:
    secret = (await create_key(api, admin, "admin script"))["secret"]
    assert (await api.data(ME, None, secret))["me"]["role"] == "USER"
    error = await api.error("{ users { edges { node { id } } } }", None, secret)
    assert (error["message"], error["extensions"]["code"]) == ("admin only", "FORBIDDEN")
    error = await api.error(CREATE, {"n": "another"}, secret)
    assert error["extensions"]["code"] == "FORBIDDEN" and "API keys cannot" in error["message"]
    other = await create_key(api, alice)
    error = await api.error(REVOKE, {"id": other["key"]["id"]}, admin.access_token)
    assert (error["message"], error["extensions"]["code"]) == ("API key not found", "NOT_FOUND")
    error = await api.error(CREATE, {"n": "   "}, alice.access_token)
    assert error["message"] == "name must not be empty"
    error = await api.error(ME, None, "chk_not-a-real-key")
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_the_readme_client_streams_a_chat_with_a_key(
    api: Api, alice: Session, backend: Backend
) -> None:
    secret = (await create_key(api, alice, "readme"))["secret"]
    env = {**os.environ, "CHAKOR_API_KEY": secret, "CHAKOR_URL": backend.ws_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO_ROOT / "docs" / "examples" / "stream_chat.py"),
        "hello there",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    answer, _, summary = out.decode().rstrip("\n").rpartition("\n[")
    conversation_id = summary.rsplit(" ", 1)[1]
    stored = await api.data(
        "query($id: ID!) { conversation(id: $id) { messages { role content } } }",
        {"id": conversation_id},
        alice.access_token,
    )
    messages = stored["conversation"]["messages"]
    assert messages[0] == {"role": "USER", "content": "hello there"}
    assert answer == messages[1]["content"]
    env["CHAKOR_API_KEY"] = "chk_revoked-or-wrong"
    refused = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO_ROOT / "docs" / "examples" / "stream_chat.py"),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await refused.communicate()
    assert refused.returncode == 1 and "refused" in err.decode()
