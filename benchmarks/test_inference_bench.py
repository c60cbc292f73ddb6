"""Inference path overhead: llama-server direct (a) vs the GraphQL `chat` subscription (b) vs (b) via nginx (c).

Same prompt token ids, n_predict and greedy decoding on every path; rounds interleaved a, b, c, a, b, c.
Targets (judged in the report, not asserted): (b) keeps >= 98% of (a)'s tokens/s and adds <= 5 ms median TTFT.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import psutil
import pytest

from backend.services.prompt import STOP, build_prompt, tokenizer_at
from benchmarks.report import quantiles
from tests.conftest import Backend
from tests.reliability.client import Stream, chat_socket, register, stream_completion
from tests.support.tiny_model import TinyModel

N_PREDICT = 256
WARMUP_ROUNDS = 3
PROMPTS = (
    "What does json.dumps do?",
    "Explain the with statement in one paragraph.",
    "How do I read a file line by line?",
)
PATHS = ("direct", "graphql", "nginx")


async def _cpu_seconds(process: psutil.Process, run: Awaitable[Stream]) -> tuple[Stream, float]:
    before = process.cpu_times()
    stream = await run
    after = process.cpu_times()
    return stream, (after.user - before.user) + (after.system - before.system)


def _path_stats(streams: list[Stream], cpu_seconds: float) -> dict[str, Any]:
    tokens = sum(s.tokens for s in streams)
    return {
        "ttft_ms": quantiles([s.ttft * 1000 for s in streams]),
        "tokens_per_second": quantiles([s.tokens_per_second for s in streams]),
        "end_to_end_tokens_per_second": quantiles([s.end_to_end_tokens_per_second for s in streams]),
        "tokens_per_answer": statistics.median(s.tokens for s in streams),
        "backend_cpu_ms_per_token": 1000 * cpu_seconds / tokens if cpu_seconds else 0.0,
    }


def _summary(samples: dict[str, list[Stream]], cpu: dict[str, float]) -> dict[str, Any]:
    paths = {path: _path_stats(samples[path], cpu[path]) for path in PATHS}
    direct = paths["direct"]
    info: dict[str, Any] = {"paths": paths, "rounds": len(samples["direct"]), "n_predict": N_PREDICT}
    for path in ("graphql", "nginx"):
        ratio = paths[path]["tokens_per_second"]["p50"] / direct["tokens_per_second"]["p50"]
        added = paths[path]["ttft_ms"]["p50"] - direct["ttft_ms"]["p50"]
        e2e = paths[path]["end_to_end_tokens_per_second"]["p50"]
        info[f"{path}_tps_ratio"] = ratio
        info[f"{path}_e2e_tps_ratio"] = e2e / direct["end_to_end_tokens_per_second"]["p50"]
        info[f"{path}_ttft_added_ms"] = added
    info["targets"] = {
        "graphql_tps_ratio_min": 0.98,
        "graphql_ttft_added_ms_max": 5.0,
        "graphql_tps_met": info["graphql_tps_ratio"] >= 0.98,
        "graphql_ttft_met": info["graphql_ttft_added_ms"] <= 5.0,
    }
    return info


async def _direct_bodies(
    llama_url: str, tiny_model: TinyModel, backend: Backend
) -> dict[str, dict[str, Any]]:
    """The exact `/completion` bodies the backend sends for each prompt (greedy)."""
    async with httpx.AsyncClient() as http:
        props = (await http.get(f"{llama_url}/props")).json()
    ctx_size = props["default_generation_settings"]["n_ctx"]
    tokenizer = tokenizer_at(tiny_model.tokenizer_dir)
    system = backend.settings.chat_system_prompt
    return {
        prompt: {
            "prompt": build_prompt(tokenizer, system, [], prompt, ctx_size, N_PREDICT),
            "n_predict": N_PREDICT,
            "stop": STOP,
            "temperature": 0.0,
        }
        for prompt in PROMPTS
    }


@pytest.mark.benchmark(group="inference-path")
def test_inference_path_overhead(
    benchmark: Any,
    runner: asyncio.Runner,
    request: pytest.FixtureRequest,
    backend: Backend,
    llama_server: str,
    nginx: str,
    tiny_model: TinyModel,
) -> None:
    rounds = int(request.config.getoption("--inference-rounds"))
    process = psutil.Process(backend.process.pid)
    samples: dict[str, list[Stream]] = {path: [] for path in PATHS}
    cpu = dict.fromkeys(PATHS, 0.0)
    http = httpx.AsyncClient(timeout=60)
    bodies = runner.run(_direct_bodies(llama_server, tiny_model, backend))
    token = runner.run(register(http, backend.graphql_url, "bench-inference@example.com"))
    connections = AsyncExitStack()
    urls = {"graphql": backend.ws_url, "nginx": nginx.replace("http://", "ws://") + "/graphql"}
    sockets = {
        path: runner.run(connections.enter_async_context(chat_socket(url, token)))
        for path, url in urls.items()
    }

    runs: dict[str, Callable[[str], Awaitable[Stream]]] = {
        "direct": lambda prompt: stream_completion(http, llama_server, bodies[prompt]),
        "graphql": lambda prompt: sockets["graphql"].chat(prompt, maxTokens=N_PREDICT, temperature=0.0),
        "nginx": lambda prompt: sockets["nginx"].chat(prompt, maxTokens=N_PREDICT, temperature=0.0),
    }
    counter = itertools.count()

    async def one_round(record: bool) -> None:
        prompt = PROMPTS[next(counter) % len(PROMPTS)]
        texts = []
        for path in PATHS:
            stream, seconds = await _cpu_seconds(process, runs[path](prompt))
            assert stream.error is None, stream.error
            texts.append(stream.text)
            if record:
                samples[path].append(stream)
                cpu[path] += seconds
        assert texts[0] == texts[1] == texts[2], "the paths must stream the same tokens"

    try:
        for _ in range(WARMUP_ROUNDS):
            runner.run(one_round(record=False))
        benchmark.pedantic(lambda: runner.run(one_round(record=True)), rounds=rounds, iterations=1)
    finally:
        runner.run(connections.aclose())
        runner.run(http.aclose())
    benchmark.extra_info.update(_summary(samples, cpu))
