"""The backend restarted: users, conversations and sessions survive; clients reconnect and carry on."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import backend_settings, start_backend
from tests.reliability.client import (
    LOGIN,
    PASSWORD,
    REGISTER,
    chat_socket,
    conversation,
    execute,
    login,
)
from tests.reliability.conftest import database_settings, start_database
from tests.support.tiny_model import TinyModel

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

REFRESH = "mutation($token: String!) { refreshToken(refreshToken: $token) { accessToken } }"
CONVERSATION_IDS = "query { conversations(first: 50) { edges { node { id } } } }"


async def test_backend_restart_keeps_everything_and_clients_reconnect(
    own_llama: str, tiny_model: TinyModel, logs_dir: Path, tmp_path: Path
) -> None:
    db_settings = database_settings(tmp_path, storage="memory")
    database = start_database(db_settings, logs_dir)
    settings = backend_settings(
        db_settings.database_uri, own_llama, tiny_model, db_name="reliability_restart"
    )
    backend = start_backend(settings, logs_dir)
    url, ws_url = settings.graphql_url, settings.graphql_url.replace("http://", "ws://", 1)
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            sessions = {}
            for name in ("alice", "bob"):
                variables = {"email": f"{name}@restart.example.com", "password": PASSWORD}
                await execute(http, url, REGISTER, variables)  # alike for every address: then login
                sessions[name] = (await execute(http, url, LOGIN, variables))["login"]
            alice = sessions["alice"]["accessToken"]
            async with chat_socket(ws_url, alice) as socket:
                first = await socket.chat("Before the restart", maxTokens=16, temperature=0.0)
            assert first.error is None and first.conversation_id is not None
            ids_before = await execute(http, url, CONVERSATION_IDS, token=alice)

            async with chat_socket(ws_url, sessions["bob"]["accessToken"]) as bob_socket:
                in_flight = await bob_socket.receive(
                    await bob_socket.send("A long answer", maxTokens=256), first_token_only=True
                )
                backend.stop()
            backend = start_backend(settings, logs_dir)

            assert await execute(http, url, CONVERSATION_IDS, token=alice) == ids_before
            async with chat_socket(ws_url, alice) as socket:
                second = await socket.chat("After it", conversationId=first.conversation_id, maxTokens=16)
            assert second.error is None and second.finish_reason
            stored = await conversation(http, url, alice, first.conversation_id)
            assert stored is not None
            assert [m["content"] for m in stored["messages"]] == [
                "Before the restart",
                first.text,
                "After it",
                second.text,
            ]
            bob = await login(http, url, "bob@restart.example.com")
            refreshed = await execute(http, url, REFRESH, {"token": sessions["alice"]["refreshToken"]})
            renewed = refreshed["refreshToken"]["accessToken"]
            me = await execute(http, url, "query { me { email } }", token=renewed)
            assert me == {"me": {"email": "alice@restart.example.com"}}  # the new token works as alice's
            bob_conversations = (await execute(http, url, CONVERSATION_IDS, token=bob))["conversations"][
                "edges"
            ]
            interrupted = await conversation(http, url, bob, bob_conversations[0]["node"]["id"])
            assert interrupted is not None
            answer = next(m for m in interrupted["messages"] if m["id"] == in_flight.message_id)
            assert answer["status"] in ("STOPPED", "COMPLETE"), answer  # never left STREAMING
            assert answer["content"].startswith(in_flight.text)
    finally:
        backend.stop()
        database.stop()
