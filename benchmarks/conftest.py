"""Benchmark fixtures: the shared real stack from tests/conftest.py, nginx in front of it, and options."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import (  # noqa: F401  (fixtures re-exported to the benchmarks)
    Backend,
    backend,
    fake_tavily,
    llama_server,
    logs_dir,
    mongo_uri,
    tiny_model,
)
from tests.support.nginx import running_nginx


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chakor-bench")
    group.addoption("--inference-rounds", type=int, default=30, help="interleaved a,b,c rounds")
    group.addoption("--concurrency", default="1,8,32", help="comma-separated simultaneous chat counts")
    group.addoption("--load-streams", type=int, default=64, help="chat streams in the load benchmark")
    group.addoption(
        "--load-queries", type=int, default=200, help="concurrent query loops in the load benchmark"
    )
    group.addoption("--load-seconds", type=float, default=60.0, help="duration of the load benchmark")


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """An event loop the synchronous benchmark callables drive (connections live across rounds)."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(scope="session")
def nginx(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """deploy/nginx/chakor.conf on a loopback port in front of the session backend; its base URL."""
    with running_nginx(backend.settings.backend_port, tmp_path_factory.mktemp("bench-nginx")) as url:
        yield url
