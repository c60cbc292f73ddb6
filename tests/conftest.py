"""Shared fixtures: the real stack (database sidecar, llama-server on our tiny GGUF, backend) on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from chakor.services import backend_process, llama_process
from common.process import ManagedProcess, free_port
from common.settings import Settings, load_settings
from tests.support.sidecar import running_sidecar
from tests.support.tiny_model import TinyModel, build_tiny_model, model_config, random_model

JWT_SECRET = "test-secret-0123456789abcdef0123456789abcdef"
TAVILY_KEY = "tvly-test-key"


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the processes started by fixtures write their logs."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def mongo_uri(logs_dir: Path) -> Iterator[str]:
    """A fresh in-memory mongoeco MongoDB-wire sidecar."""
    with running_sidecar("memory", logs_dir) as uri:
        yield uri


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny random-init model: tokenizer, export dir and f32 GGUF made by our converter."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


# llama-server's default seed is random per request: tests that sample (temperature > 0) would see a
# different answer each run. A fixed server seed makes every sampled answer to a given prompt repeatable.
LLAMA_SEED = "1234"


def start_llama_server(model: Path, logs_dir: Path, **overrides: object) -> ManagedProcess:
    """A real llama-server on a free port serving `model`, sampling with a fixed seed; the caller stops it."""
    settings = load_settings(**{"llama_port": free_port(), "llama_parallel": 4, **overrides})
    process = llama_process(settings, model, logs_dir)
    seeded = replace(process, argv=[*process.argv, "--seed", LLAMA_SEED])
    return seeded.start().wait_healthy(timeout=120)


def start_slow_llama(model: Path, logs_dir: Path, port: int) -> ManagedProcess:
    """One slot, one thread: answers stream for seconds, long enough to interrupt them."""
    return start_llama_server(
        model, logs_dir, llama_port=port, llama_parallel=1, llama_ctx_size=2048, llama_threads=1
    )


@pytest.fixture(scope="session")
def slow_gguf(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A larger random-init model (about 24M parameters, tens of tokens/s on one thread) through our converter.

    The tiny model answers in milliseconds; interrupting an answer mid-stream needs a slower one.
    """
    cfg = model_config(tiny_model.tokenizer_dir, dim=512, n_layers=8, n_heads=8, n_kv_heads=4)
    return random_model(cfg, tiny_model.tokenizer_dir, tmp_path_factory.mktemp("slow-model"))[1]


@contextmanager
def running_llama_server(model: Path, logs_dir: Path) -> Iterator[str]:
    """A real llama-server on `model` for the duration of the block; yields its base URL."""
    process = start_llama_server(model, logs_dir)
    try:
        assert process.health_url is not None
        yield process.health_url.removesuffix("/health")
    finally:
        process.stop()


@pytest.fixture(scope="session")
def llama_server(tiny_model: TinyModel, logs_dir: Path) -> Iterator[str]:
    """Base URL of a real llama-server on the tiny GGUF."""
    with running_llama_server(tiny_model.gguf_path, logs_dir) as url:
        yield url


@dataclass
class Backend:
    """A running backend process and its URLs."""

    settings: Settings
    process: ManagedProcess
    tavily_url: str

    @property
    def url(self) -> str:
        return self.settings.backend_url

    @property
    def graphql_url(self) -> str:
        return self.settings.graphql_url

    @property
    def ws_url(self) -> str:
        return self.settings.graphql_url.replace("http://", "ws://", 1)


def backend_settings(mongo_uri: str, llama_url: str, tiny_model: TinyModel, **overrides: object) -> Settings:
    """Settings for a backend under test: fresh port, the given database and llama-server."""
    host, port = llama_url.removeprefix("http://").rsplit(":", 1)
    return load_settings(
        **{
            "backend_port": free_port(),
            "mongodb_uri": mongo_uri,
            "llama_host": host,
            "llama_port": int(port),
            "model_path": tiny_model.gguf_path,
            "tokenizer_path": tiny_model.tokenizer_dir,
            "jwt_secret": JWT_SECRET,
            # every test registers its users from 127.0.0.1: the per-client sign-up limit is tested
            # on a backend of its own (tests/backend/test_admission.py)
            "signup_max_attempts": 100_000,
            **overrides,
        }
    )


def start_backend(settings: Settings, logs_dir: Path) -> ManagedProcess:
    """The backend under uvicorn with `settings`; the caller stops it."""
    return backend_process(settings, logs_dir).start().wait_healthy(timeout=90)


@pytest.fixture(scope="session")
def fake_tavily() -> Iterator[str]:
    """Base URL of a local HTTP server that speaks Tavily's /search JSON (tests/support/fake_tavily.py)."""
    from tests.support.fake_tavily import FakeTavily

    with FakeTavily() as server:
        yield server.url


@pytest.fixture(scope="session")
def backend(
    mongo_uri: str, llama_server: str, tiny_model: TinyModel, fake_tavily: str, logs_dir: Path
) -> Iterator[Backend]:
    """The real backend: uvicorn process on the sidecar database, llama-server and the fake Tavily."""
    settings = backend_settings(
        mongo_uri,
        llama_server,
        tiny_model,
        db_name="chakor_test",
        tavily_api_key=TAVILY_KEY,
        tavily_base_url=fake_tavily,
    )
    process = start_backend(settings, logs_dir)
    try:
        yield Backend(settings=settings, process=process, tavily_url=fake_tavily)
    finally:
        process.stop()
