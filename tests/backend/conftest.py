"""Fixtures for the backend tests: an API client on the shared backend, the database, users, a private stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from chakor.process import ManagedProcess, free_port
from chakor.services import llama_process
from chakor.settings import Settings, load_settings
from tests.backend.client import Api, Session
from tests.conftest import Backend, backend_settings, start_backend
from tests.support.tiny_model import TinyModel

ROOT_ADMIN = "root-admin@example.test"


@pytest.fixture(scope="session")
async def api(backend: Backend) -> AsyncIterator[Api]:
    """A GraphQL client on the shared backend, whose database gets an admin before any other user.

    The admin comes from `chakor admin create-user --admin`, so users the tests register are never
    the first one (who would become admin).
    """
    from tests.backend.test_cli import create_user_cli

    result = create_user_cli(backend.settings, ROOT_ADMIN, "--admin")
    assert result.returncode == 0 or "already exists" in result.stderr, result.stderr
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
        self.llama = start_private_llama(self.model, self.logs_dir, self.llama_port)

    @property
    def llama_port(self) -> int:
        return self.settings.llama_port


def start_private_llama(model: Path, logs_dir: Path, port: int) -> ManagedProcess:
    """One slot, one thread: answers stream for seconds, long enough to interrupt them."""
    settings = load_settings(llama_port=port, llama_parallel=1, llama_ctx_size=2048, llama_threads=1)
    return llama_process(settings, model, logs_dir).start().wait_healthy(timeout=120)


@pytest.fixture(scope="session")
def slow_gguf(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A larger random-init model (about 24M parameters, tens of tokens/s on one thread) through our converter.

    The tiny model answers in milliseconds; interrupting an answer mid-stream needs a slower one.
    """
    import torch

    from converter.convert import convert
    from trainer.configs import ModelConfig
    from trainer.export import export_state_dict
    from trainer.model import Transformer
    from trainer.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("slow-model")
    vocab = load_tokenizer(tiny_model.tokenizer_dir).get_vocab_size()
    cfg = ModelConfig(
        dim=512, n_layers=8, n_heads=8, n_kv_heads=4, vocab_size=vocab, ffn_hidden_dim=1536,
        max_seq_len=2048, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    state = Transformer(cfg).state_dict()
    export_dir = export_state_dict(
        state, cfg, tiny_model.tokenizer_dir, root / "export", lineage={"source": "slow"}
    )
    return convert(export_dir, root / "slow-f32.gguf", "f32")


@pytest.fixture(scope="session")
async def private_stack(
    mongo_uri: str, tiny_model: TinyModel, slow_gguf: Path, logs_dir: Path
) -> AsyncIterator[PrivateStack]:
    """llama-server on the slow model + backend on a fresh database (`chakor_private`), no Tavily key."""
    private_logs = logs_dir / "private"
    port = free_port()
    llama = start_private_llama(slow_gguf, private_logs, port)
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
        async with httpx.AsyncClient(base_url=settings.backend_url, timeout=60) as http:
            ws_url = settings.graphql_url.replace("http://", "ws://", 1)
            stack = PrivateStack(settings, llama, backend, Api(http, ws_url), slow_gguf, private_logs)
            yield stack
    finally:
        if backend is not None:
            backend.stop()
        (stack.llama if stack else llama).stop()
