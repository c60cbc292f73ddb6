"""Benchmark fixtures: the shared real stack from tests/conftest.py, nginx in front of it, and options."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chakor.process import ManagedProcess, free_port
from tests.conftest import (  # noqa: F401  (fixtures re-exported to the benchmarks)
    Backend,
    backend,
    fake_tavily,
    llama_server,
    logs_dir,
    mongo_uri,
    tiny_model,
)
from tests.test_nginx import NGINX, render_config


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
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: `make setup-test` installs Debian's nginx")
    workdir = tmp_path_factory.mktemp("bench-nginx")
    port = free_port()
    config = render_config(backend.settings.backend_port, free_port(), port, workdir)
    subprocess.run([NGINX, "-t", "-c", str(config)], check=True, capture_output=True)
    process = ManagedProcess(
        name="nginx",
        argv=[NGINX, "-c", str(config)],
        log_path=workdir / "nginx.out",
        health_url=f"http://127.0.0.1:{port}/healthz",
    )
    process.start().wait_healthy(timeout=30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()
