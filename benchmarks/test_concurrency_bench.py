"""Simultaneous chat subscriptions from distinct users (TTFT, per-token chunking delay, backend CPU, tokens
lost), and the full-size load run of tests/reliability (64 streams + 200 query loops for 60 s by default).

The chats run on benchmarks/stack.py's stack, whose capture proxy records what llama-server generated for
each request: a token counts as lost unless client text == stored text == llama-server's text. Each user
asks a question of their own, so its llama-server request is found by its prompt ids.

Each round also sends the same questions, all at once, straight to llama-server (`direct`, the same
prompt ids) and through `/v1/chat/completions` (`v1`), in a rotated order: the tokens/s that one
backend relays at that many streams against what llama-server streams to as many clients itself, and
the backend's CPU per token on each API. Direct and v1 clients are httpx + httpx-sse, the GraphQL one
plain websockets, all in this process.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from backend.services.prompt import tokenizer_at
from benchmarks.delays import chunk_delays
from benchmarks.report import quantiles
from benchmarks.stack import InferenceStack
from common.chat import STOP, build_prompt
from tests.conftest import Backend
from tests.reliability.client import (
    Stream,
    chat_socket,
    conversation,
    register,
    stream_chat_completion,
    stream_completion,
)
from tests.reliability.load import run_load
from tests.support.capture_llama import Completion

T = TypeVar("T")
ROUNDS = 3
ANSWER_TOKENS = 128
PROMPTS = ("What does json.dumps do?", "Explain the with statement.", "How do I read a file line by line?")
PATHS = ("graphql", "direct", "v1")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "streams" in metafunc.fixturenames:
        counts = [int(n) for n in str(metafunc.config.getoption("--concurrency")).split(",")]
        metafunc.parametrize("streams", counts)


async def _gather(*awaitables: Awaitable[T]) -> list[T]:
    return list(await asyncio.gather(*awaitables))


async def _lost_tokens(
    http: httpx.AsyncClient, url: str, token: str, stream: Stream, completion: Completion
) -> int:
    """llama-server's tokens for this answer unless client text == stored text == generated text (else 0)."""
    assert stream.conversation_id is not None and stream.error is None, stream.error
    stored = await conversation(http, url, token, stream.conversation_id)
    answer = next(m for m in (stored or {"messages": []})["messages"] if m["id"] == stream.message_id)
    same = answer["content"] == stream.text == completion.text and answer["status"] == "COMPLETE"
    return 0 if same else (completion.predicted_n or len(completion.contents))


@pytest.mark.benchmark(group="concurrency")
def test_concurrency(
    benchmark: Any, runner: asyncio.Runner, latency_stack: InferenceStack, streams: int
) -> None:
    stack = latency_stack
    url = stack.graphql_url
    process = psutil.Process(stack.backend_pid)
    http = httpx.AsyncClient(timeout=120)
    emails = [f"bench-c{streams}-{i}@example.com" for i in range(streams)]
    tokens = runner.run(_gather(*(register(http, url, email) for email in emails)))
    questions = [f"{PROMPTS[i % 3]} (user {i})" for i in range(streams)]
    ctx_size = httpx.get(f"{stack.llama_url}/props").json()["default_generation_settings"]["n_ctx"]
    tokenizer = tokenizer_at(stack.tokenizer_dir)
    prompt_ids = [
        build_prompt(tokenizer, stack.system_prompt, [], q, ctx_size, ANSWER_TOKENS) for q in questions
    ]
    connections = AsyncExitStack()
    sockets = [runner.run(connections.enter_async_context(chat_socket(stack.ws_url, t))) for t in tokens]
    auth = {"Authorization": f"Bearer {tokens[0]}"}
    [model] = [m["id"] for m in httpx.get(f"{stack.api_url}/models", headers=auth).json()["data"]]
    bodies = [
        {"prompt": ids, "n_predict": ANSWER_TOKENS, "stop": STOP, "temperature": 0.0} for ids in prompt_ids
    ]
    runs: dict[str, Callable[[int], Awaitable[Stream]]] = {
        "graphql": lambda i: sockets[i].chat(questions[i], maxTokens=ANSWER_TOKENS, temperature=0.0),
        "direct": lambda i: stream_completion(http, stack.llama_url, bodies[i]),
        "v1": lambda i: stream_chat_completion(
            http, stack.api_url, tokens[i], model, questions[i], ANSWER_TOKENS
        ),
    }
    results: list[tuple[str, Stream, Completion]] = []
    totals = {path: {"cpu": 0.0, "seconds": 0.0, "tokens": 0} for path in PATHS}
    rounds = itertools.count()

    async def one_path(path: str) -> None:
        before, started = process.cpu_times(), time.perf_counter()
        done = await asyncio.gather(*(runs[path](i) for i in range(streams)))
        seconds, after = time.perf_counter() - started, process.cpu_times()
        records = stack.capture.new_records()
        total = totals[path]
        total["cpu"] += (after.user - before.user) + (after.system - before.system)
        total["seconds"] += seconds
        for user, stream in enumerate(done):
            [completion] = [c for c in records if c.prompt == prompt_ids[user]]
            total["tokens"] += completion.predicted_n or 0
            if path == "graphql":
                results.append((tokens[user], stream, completion))
            else:
                assert stream.error is None and stream.text == completion.text, (path, stream.error)

    async def one_round() -> None:
        turn = next(rounds) % len(PATHS)
        for path in PATHS[turn:] + PATHS[:turn]:
            await one_path(path)

    try:
        runner.run(one_round())  # warm-up, not recorded
        results.clear()
        for total in totals.values():
            total.update(cpu=0.0, seconds=0.0, tokens=0)
        benchmark.pedantic(lambda: runner.run(one_round()), rounds=ROUNDS, iterations=1)
        lost = runner.run(_gather(*(_lost_tokens(http, url, t, s, c) for t, s, c in results)))
    finally:
        runner.run(connections.aclose())
        runner.run(http.aclose())
    answers = [s for _, s, _ in results]
    generated = sum(c.predicted_n or 0 for _, _, c in results)
    delays = [d * 1000 for _, s, c in results if s.text == c.text for d in chunk_delays(s, c)]
    benchmark.extra_info.update(
        {
            "streams": streams,
            "rounds": ROUNDS,
            "answer_tokens": ANSWER_TOKENS,
            "model": stack.model,
            "ttft_ms": quantiles([s.ttft * 1000 for s in answers]),
            "chunk_delay_ms": quantiles(delays),
            "backend_cpu_ms_per_token": 1000 * totals["graphql"]["cpu"] / generated,
            "tokens": generated,
            "paths": {
                path: {
                    "tokens_per_second": total["tokens"] / total["seconds"],
                    "backend_cpu_ms_per_token": 1000 * total["cpu"] / total["tokens"],
                }
                for path, total in totals.items()
            },
            "tokens_lost": sum(lost),
        }
    )
    assert sum(lost) == 0, "every answer must reach the client and the database exactly as generated"


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
