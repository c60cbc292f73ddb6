"""The SQLite-backed database sidecar killed and restarted mid-session."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import backend_settings, start_backend
from tests.reliability.client import (
    CONVERSATIONS,
    GraphQLFailed,
    chat_socket,
    conversation,
    execute,
    login,
    register,
)
from tests.reliability.conftest import database_settings, start_database
from tests.support.tiny_model import TinyModel

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

RENAME = "mutation($id: ID!, $title: String!) { renameConversation(id: $id, title: $title) { id title } }"
CREATE = "mutation($title: String!) { createConversation(title: $title) { id } }"
RECOVERY_SECONDS = 60.0


async def _until_up(http: httpx.AsyncClient, url: str, token: str) -> int:
    """Poll a query until the backend answers it again (bounded); how many attempts failed first."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    failures = 0
    while True:
        try:
            await execute(http, url, CONVERSATIONS, token=token)
            return failures
        except GraphQLFailed:
            failures += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_database_restart_fails_clearly_then_recovers_without_loss(
    own_llama: str, tiny_model: TinyModel, logs_dir: Path, tmp_path: Path
) -> None:
    db_settings = database_settings(tmp_path)
    database = start_database(db_settings, logs_dir)
    settings = backend_settings(db_settings.database_uri, own_llama, tiny_model, db_name="reliability_db")
    backend = start_backend(settings, logs_dir)
    ws_url = settings.graphql_url.replace("http://", "ws://", 1)
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            url = settings.graphql_url
            token = await register(http, url, "restart-db@example.com")
            async with chat_socket(ws_url, token) as socket:
                before = await socket.chat("Acknowledged before the restart", maxTokens=24, temperature=0.0)
            assert before.error is None and before.conversation_id
            renamed = await execute(http, url, RENAME, {"id": before.conversation_id, "title": "kept"}, token)
            assert renamed["renameConversation"]["title"] == "kept"
            second = (await execute(http, url, CREATE, {"title": "second"}, token))["createConversation"][
                "id"
            ]

            database.kill()
            with pytest.raises(GraphQLFailed) as query_down:
                await execute(http, url, CONVERSATIONS, token=token)
            with pytest.raises(GraphQLFailed) as mutation_down:
                await execute(http, url, CREATE, {"title": "while down"}, token)
            async with chat_socket(ws_url, token) as socket:
                chat_down = await socket.chat("While the database is down", maxTokens=8, temperature=0.0)
            assert query_down.value.codes == mutation_down.value.codes == ["SERVICE_UNAVAILABLE"]
            for error in (str(query_down.value), str(mutation_down.value), str(chat_down.error)):
                assert "database unavailable" in error, error

            database = start_database(db_settings, logs_dir)
            await _until_up(http, url, token)
            assert backend.alive()
            token = await login(http, url, "restart-db@example.com")
            stored = await conversation(http, url, token, before.conversation_id)
            assert stored is not None and stored["title"] == "kept"
            assert [(m["role"], m["content"], m["status"]) for m in stored["messages"]] == [
                ("USER", "Acknowledged before the restart", "COMPLETE"),
                ("ASSISTANT", before.text, "COMPLETE"),
            ]
            assert await conversation(http, url, token, second) is not None
            titles = [
                e["node"]["title"]
                for e in (await execute(http, url, CONVERSATIONS, token=token))["conversations"]["edges"]
            ]
            assert "while down" not in titles

            async with chat_socket(ws_url, token) as socket:
                after = await socket.chat("And after it", conversationId=before.conversation_id, maxTokens=8)
            assert after.error is None and after.finish_reason
            stored = await conversation(http, url, token, before.conversation_id)
            assert stored is not None and stored["messages"][-1]["content"] == after.text
    finally:
        backend.stop()
        database.stop()
