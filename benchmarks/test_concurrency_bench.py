"""Simultaneous chat subscriptions from distinct users (TTFT, inter-token latency, backend CPU, tokens lost),
and the full-size load run of tests/reliability (64 streams + 200 query loops for 60 s by default).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from benchmarks.report import quantiles
from tests.conftest import Backend
from tests.reliability.client import Stream, chat_socket, conversation, register
from tests.reliability.load import run_load

T = TypeVar("T")
ROUNDS = 3
ANSWER_TOKENS = 128
PROMPTS = ("What does json.dumps do?", "Explain the with statement.", "How do I read a file line by line?")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "streams" in metafunc.fixturenames:
        counts = [int(n) for n in str(metafunc.config.getoption("--concurrency")).split(",")]
        metafunc.parametrize("streams", counts)


async def _gather(*awaitables: Awaitable[T]) -> list[T]:
    return list(await asyncio.gather(*awaitables))


async def _lost(http: httpx.AsyncClient, url: str, token: str, stream: Stream) -> int:
    """Characters of the answer the client did not receive exactly as stored (0 when identical)."""
    assert stream.conversation_id is not None and stream.error is None, stream.error
    stored = await conversation(http, url, token, stream.conversation_id)
    answer = next(m for m in (stored or {"messages": []})["messages"] if m["id"] == stream.message_id)
    if answer["content"] == stream.text and answer["status"] == "COMPLETE":
        return 0
    return max(len(answer["content"]), len(stream.text))


@pytest.mark.benchmark(group="concurrency")
def test_concurrency(benchmark: Any, runner: asyncio.Runner, backend: Backend, streams: int) -> None:
    url = backend.graphql_url
    process = psutil.Process(backend.process.pid)
    http = httpx.AsyncClient(timeout=120)
    emails = [f"bench-c{streams}-{i}@example.com" for i in range(streams)]
    tokens = runner.run(_gather(*(register(http, url, email) for email in emails)))
    connections = AsyncExitStack()
    sockets = [runner.run(connections.enter_async_context(chat_socket(backend.ws_url, t))) for t in tokens]
    results: list[tuple[str, Stream]] = []
    cpu_seconds = 0.0

    async def one_round() -> None:
        nonlocal cpu_seconds
        before = process.cpu_times()
        done = await asyncio.gather(
            *(s.chat(PROMPTS[i % 3], maxTokens=ANSWER_TOKENS, temperature=0.0) for i, s in enumerate(sockets))
        )
        after = process.cpu_times()
        cpu_seconds += (after.user - before.user) + (after.system - before.system)
        results.extend(zip(tokens, done, strict=True))

    try:
        runner.run(one_round())  # warm-up, not recorded
        results.clear()
        cpu_seconds = 0.0
        benchmark.pedantic(lambda: runner.run(one_round()), rounds=ROUNDS, iterations=1)
        lost = runner.run(_gather(*(_lost(http, url, token, s) for token, s in results)))
    finally:
        runner.run(connections.aclose())
        runner.run(http.aclose())
    answers = [s for _, s in results]
    tokens_total = sum(s.tokens_predicted or 0 for s in answers)
    benchmark.extra_info.update(
        {
            "streams": streams,
            "rounds": ROUNDS,
            "answer_tokens": ANSWER_TOKENS,
            "ttft_ms": quantiles([s.ttft * 1000 for s in answers]),
            "inter_token_ms": quantiles([gap * 1000 for s in answers for gap in s.inter_token]),
            "backend_cpu_ms_per_token": 1000 * cpu_seconds / tokens_total,
            "tokens": tokens_total,
            "tokens_lost": sum(lost),
        }
    )
    assert sum(lost) == 0, "every answer must be stored exactly as it was streamed"


@pytest.mark.benchmark(group="load")
def test_load(
    benchmark: Any, runner: asyncio.Runner, request: pytest.FixtureRequest, backend: Backend
) -> None:
    options = request.config.getoption
    streams, queries, seconds = (
        options("--load-streams"),
        options("--load-queries"),
        options("--load-seconds"),
    )
    pid = backend.process.pid
    assert pid is not None
    tags = (f"bench{n}" for n in itertools.count())
    reports = []

    def run() -> None:
        reports.append(runner.run(run_load(backend.graphql_url, pid, streams, queries, seconds, next(tags))))

    benchmark.pedantic(run, rounds=1, iterations=1)
    report = reports[0]
    benchmark.extra_info.update(
        {**report.summary(), "ttft_ms": quantiles([s.ttft * 1000 for s in report.turns])}
    )
    assert report.errors == [] and report.lost == [], (report.errors[:5], report.lost[:5])
