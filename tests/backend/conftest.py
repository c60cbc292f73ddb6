"""Fixtures for the backend tests: an API client on the shared backend, the database, users, a private stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from common.process import ManagedProcess, free_port
from common.settings import Settings
from tests.conftest import Backend, backend_settings, start_backend, start_slow_llama
from tests.support.graphql import Api, Session
from tests.support.tiny_model import TinyModel

ROOT_ADMIN = "root-admin@example.test"
PRIVATE_ADMIN = "private-admin@example.test"


@pytest.fixture(scope="session")
async def api(backend: Backend) -> AsyncIterator[Api]:
    """A GraphQL client on the shared backend, whose database gets an admin before any other user.

    The admin comes from `chakor admin create-user --admin`, so users the tests register are never
    the first one (who would become admin).
    """
    from tests.backend.test_cli import create_user_cli

    result = create_user_cli(backend.settings, ROOT_ADMIN, "--admin")
    assert result.returncode == 0 or "already exists" in result.stdout, result.stdout + result.stderr
    async with httpx.AsyncClient(base_url=backend.url, timeout=60) as http:
        yield Api(http, backend.ws_url)


@pytest.fixture(scope="session")
async def db(backend: Backend) -> AsyncIterator[AsyncDatabase]:
    """The shared backend's database, read directly to check what was stored."""
    client: AsyncMongoClient = AsyncMongoClient(backend.settings.database_uri, tz_aware=True)
    yield client[backend.settings.db_name]
    await client.close()


@pytest.fixture
async def alice(api: Api) -> Session:
    return await api.register(display_name="Alice")


@pytest.fixture
async def bob(api: Api) -> Session:
    return await api.register(display_name="Bob")


@pytest.fixture(scope="session")
async def admin(api: Api) -> Session:
    """The admin of the shared backend."""
    return await api.login(ROOT_ADMIN)


@dataclass
class PrivateStack:
    """A backend of its own on a llama-server of its own (for fault tests) and a fresh database."""

    settings: Settings
    llama: ManagedProcess
    backend: ManagedProcess
    api: Api
    model: Path
    logs_dir: Path

    def restart_llama(self) -> None:
        """Start the llama-server again on the same port (what the supervisor does)."""
        self.llama = start_slow_llama(self.model, self.logs_dir, self.llama_port)

    @property
    def llama_port(self) -> int:
        return self.settings.llama_port


@pytest.fixture(scope="session")
async def private_stack(
    mongo_uri: str, tiny_model: TinyModel, slow_gguf: Path, logs_dir: Path
) -> AsyncIterator[PrivateStack]:
    """llama-server on the slow model + backend on a fresh database (`chakor_private`), no Tavily key."""
    private_logs = logs_dir / "private"
    port = free_port()
    llama = start_slow_llama(slow_gguf, private_logs, port)
    stack: PrivateStack | None = None
    backend: ManagedProcess | None = None
    try:
        settings = backend_settings(
            mongo_uri,
            f"http://127.0.0.1:{port}",
            tiny_model,
            db_name="chakor_private",
            model_path=slow_gguf,
            llama_parallel=1,
        )
        backend = start_backend(settings, private_logs)
        from tests.backend.test_cli import create_user_cli

        made = create_user_cli(settings, PRIVATE_ADMIN, "--admin")
        assert made.returncode == 0, made.stderr
        async with httpx.AsyncClient(base_url=settings.backend_url, timeout=60) as http:
            ws_url = settings.graphql_url.replace("http://", "ws://", 1)
            stack = PrivateStack(settings, llama, backend, Api(http, ws_url), slow_gguf, private_logs)
            yield stack
    finally:
        if stack is not None:
            stack.backend.stop()  # a test may have replaced it (killed and restarted)
        elif backend is not None:
            backend.stop()
        (stack.llama if stack else llama).stop()
