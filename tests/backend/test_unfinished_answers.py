"""An answer whose final save fails (the database stops mid-answer) does not stay `streaming`: the
backend's sweep marks it `interrupted` within 60 s, with no other answer running to wake it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from backend.services.streams import UNFINISHED
from chakor.services import db_process
from common.process import free_port
from common.settings import load_settings
from tests.conftest import backend_settings, start_backend, start_slow_llama
from tests.support.graphql import CHAT, Api
from tests.support.tiny_model import TinyModel

pytestmark = pytest.mark.slow
LONG = {"content": "hello there", "maxTokens": 1000, "temperature": 1.0}
SWEPT_WITHIN_SECONDS = 60
DOWN_SECONDS = 8


async def test_an_answer_left_streaming_by_a_failed_save_is_swept(
    tiny_model: TinyModel, slow_gguf: Path, tmp_path: Path, logs_dir: Path
) -> None:
    logs = logs_dir / "unfinished"
    db_settings = load_settings(
        db_port=free_port(), db_storage="sqlite", var_dir=tmp_path, db_name="unfinished"
    )
    database = db_process(db_settings, logs).start().wait_healthy(timeout=60)
    llama_port = free_port()
    llama = start_slow_llama(slow_gguf, logs, llama_port)
    settings = backend_settings(
        db_settings.database_uri, f"http://127.0.0.1:{llama_port}", tiny_model, db_name="unfinished"
    )
    backend = start_backend(settings, logs)
    try:
        async with httpx.AsyncClient(base_url=settings.backend_url, timeout=60) as http:
            api = Api(http, settings.graphql_url.replace("http://", "ws://", 1))
            user = await api.register()
            events: list[dict] = []
            async for result in api.subscribe(CHAT, {"input": LONG}, user.authorization):
                events.append(result["chat"])
                if len(events) == 3:  # stored as streaming, two tokens in: the database goes away
                    database.stop()
                    failed_at = time.monotonic()
                    break  # the client leaves: the answer's final save fails
            # down for longer than the driver waits for a server (5 s), so the save gives up
            await asyncio.sleep(DOWN_SECONDS)
            database = db_process(db_settings, logs).start().wait_healthy(timeout=60)
            client: AsyncMongoClient = AsyncMongoClient(settings.database_uri, tz_aware=True)
            messages = client[settings.db_name].messages
            answer = {"_id": ObjectId(events[0]["assistantMessageId"])}
            try:
                assert (await messages.find_one(answer))["status"] == "streaming"
                while time.monotonic() - failed_at < SWEPT_WITHIN_SECONDS:
                    stored = await messages.find_one(answer)
                    if stored["status"] != "streaming":
                        break
                    await asyncio.sleep(0.5)
                assert stored["status"] == "interrupted", f"{stored['status']} after {SWEPT_WITHIN_SECONDS} s"
                assert stored["error"] == UNFINISHED
            finally:
                await client.close()
    finally:
        backend.stop()
        llama.stop()
        database.stop()
