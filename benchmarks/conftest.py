"""Benchmark fixtures: the shared real stack from tests/conftest.py, the latency stack, and options."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import stack
from benchmarks.stack import InferenceStack
from tests.conftest import (  # noqa: F401  (fixtures re-exported to the benchmarks)
    Backend,
    backend,
    fake_tavily,
    llama_server,
    logs_dir,
    mongo_uri,
    tiny_model,
)
from tests.support.tiny_model import TinyModel


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chakor-bench")
    # The paired medians of 30 served rounds moved by up to 3 ms between runs on the 2-core VM; 100
    # rounds (about 25 s) move by about 0.5 ms. A paced round takes about 1.7 s.
    group.addoption(
        "--inference-rounds", type=int, default=100, help="rotated direct/GraphQL/nginx rounds, served model"
    )
    group.addoption(
        "--paced-rounds", type=int, default=16, help="rotated rounds with the model paced at 30 tokens/s"
    )
    group.addoption("--concurrency", default="1,8,32,64", help="comma-separated simultaneous chat counts")
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
def latency_stack(
    tiny_model: TinyModel,  # noqa: F811
    mongo_uri: str,  # noqa: F811
    logs_dir: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[InferenceStack]:
    """benchmarks/stack.py's stack (served model behind the capture proxy, own backend, nginx)."""
    with stack.latency_stack(tiny_model, mongo_uri, logs_dir, tmp_path_factory.mktemp("latency-nginx")) as s:
        yield s


@pytest.hookimpl(wrapper=True)
def pytest_benchmark_generate_json(
    config: pytest.Config,
    benchmarks: list[Any],
    include_data: bool,
    machine_info: dict[str, Any],
    commit_info: dict[str, Any],
) -> Iterator[None]:
    """Leave out benchmarks that recorded no round (a test that failed inside them): pytest-benchmark
    cannot compute their statistics and would otherwise lose the whole results file."""
    benchmarks[:] = [bench for bench in benchmarks if bench.stats.data]
    return (yield)
