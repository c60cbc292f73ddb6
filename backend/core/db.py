"""The MongoDB connection (a mongoeco sidecar in development, MongoDB in production) and Beanie."""

from __future__ import annotations

import time

from beanie import init_beanie
from pymongo import AsyncMongoClient

from backend.core.config import Settings
from backend.models import DOCUMENT_MODELS


async def connect(settings: Settings) -> AsyncMongoClient:
    """Open the client and initialise Beanie (creating indexes) on `settings.db_name`."""
    client: AsyncMongoClient = AsyncMongoClient(
        settings.database_uri, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    await init_beanie(database=client[settings.db_name], document_models=DOCUMENT_MODELS)
    return client


async def ping(client: AsyncMongoClient) -> float:
    """Round-trip time of a `ping` command in milliseconds (raises when the database is down)."""
    start = time.perf_counter()
    await client.admin.command("ping")
    return (time.perf_counter() - start) * 1000
