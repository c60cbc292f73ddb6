"""Server status for admins: llama-servers, this process's CPU and memory, the database, streams."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

import psutil
from pymongo import AsyncMongoClient

from backend.core.db import ping
from backend.services.llama import ServerState
from backend.services.served_models import ModelRoster
from backend.services.streams import StreamRegistry

ServerT = TypeVar("ServerT")


@dataclass
class Status(Generic[ServerT]):
    """One snapshot; generic in how a llama-server is described, so the GraphQL type can inherit it."""

    llama_servers: list[ServerT]
    cpu_percent: float
    memory_rss_mb: float
    system_memory_percent: float
    database_ok: bool
    database_latency_ms: float | None
    database_error: str | None
    active_streams: int
    uptime_seconds: float


class StatusReporter:
    """Collects status snapshots (CPU percent is measured between calls)."""

    def __init__(self, models: ModelRoster, client: AsyncMongoClient, streams: StreamRegistry) -> None:
        self.models, self.client, self.streams = models, client, streams
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)
        self._started = time.monotonic()

    async def snapshot(self) -> Status[ServerState]:
        """The current status."""
        probed = await asyncio.gather(*(model.pool.probe_all() for model in self.models.models.values()))
        servers = [server for model_servers in probed for server in model_servers]
        latency, error = None, None
        try:
            latency = await ping(self.client)
        except Exception as exc:  # any database failure is reported, not raised
            error = f"{type(exc).__name__}: {exc}"[:300]
        return Status(
            llama_servers=servers,
            cpu_percent=self._process.cpu_percent(None),
            memory_rss_mb=self._process.memory_info().rss / 2**20,
            system_memory_percent=psutil.virtual_memory().percent,
            database_ok=error is None,
            database_latency_ms=latency,
            database_error=error,
            active_streams=len(self.streams),
            uptime_seconds=time.monotonic() - self._started,
        )
