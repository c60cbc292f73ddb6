"""What the API adds to an answer a user waits for: llama-server direct vs the GraphQL `chat` subscription
vs the subscription through nginx vs the OpenAI-compatible `/v1/chat/completions` stream, for the same
generated tokens.

Every path gets the same prompt token ids, greedy decoding and n_predict; each round runs the four paths
in a rotated order (direct, graphql, nginx, v1 / graphql, nginx, v1, direct / ...) so no path always runs
first. The texts and llama-server's own token counts must match across the paths of a round. All reach
llama-server through tests/support/capture_llama.py, which records when each token left llama-server:
the reference for the chunking delay (token leaves llama-server -> the client holds it).

Two scenarios on the served model (what `chakor up` serves: the quickstart manifest's `served` GGUF, see
benchmarks/stack.py; else the tests' random-init stand-in, and the report says so): `served` at the model's
own speed (thousands of tokens/s on a CPU for these tiny models), and `paced-30tps`, each token held 1/30 s
like a 7B model on a consumer GPU. n_predict is capped at half the slot's context, as the backend caps it. Judged figures (medians of per-round paired differences; targets judged in the report, not
asserted): added time to first token <= 5 ms, added request-to-last-token time <= 10 ms, chunking delay
p99 <= 50 ms.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest

from backend.services.prompt import tokenizer_at
from benchmarks.delays import chunk_delays
from benchmarks.report import quantiles
from benchmarks.stack import InferenceStack
from common.chat import STOP, build_prompt
from tests.reliability.client import (
    Stream,
    chat_socket,
    register,
    stream_chat_completion,
    stream_completion,
)
from tests.support.capture_llama import Completion

PROMPTS = (
    "What does json.dumps do?",
    "Explain the with statement in one paragraph.",
    "How do I read a file line by line?",
)
PATHS = ("direct", "graphql", "nginx", "v1")
JUDGED = ("graphql", "nginx", "v1")  # the paths judged against direct
PACE = {"served": 0.0, "paced-30tps": 1 / 30}  # seconds each token is held before it leaves llama-server
N_PREDICT = {"served": 256, "paced-30tps": 64}  # 64 tokens at 30/s: about 2 s per answer
WARMUP_ROUNDS = {"served": 3, "paced-30tps": 1}
TARGETS = {"added_ttft_ms": 5.0, "added_answer_ms": 10.0, "chunk_delay_p99_ms": 50.0}


@dataclass
class Sample:
    """One path of one round."""

    stream: Stream
    completion: Completion
    backend_cpu_seconds: float

    @property
    def ttft_ms(self) -> float:
        return self.stream.ttft * 1000

    @property
    def answer_ms(self) -> float:
        return self.stream.answer_seconds * 1000


def _paired_ms(rounds: list[dict[str, Sample]], path: str, base: str, metric: str) -> float:
    """Median over rounds of (path - base) for `metric`: both ran the same prompt in the same round."""
    return statistics.median(getattr(r[path], metric) - getattr(r[base], metric) for r in rounds)


def summarize(rounds: list[dict[str, Sample]], scenario: str, model: str, n_predict: int) -> dict[str, Any]:
    """Per-path distributions, paired added times and verdicts against TARGETS."""
    paths: dict[str, Any] = {}
    for path in PATHS:
        samples = [r[path] for r in rounds]
        tokens = sum(s.completion.predicted_n or 0 for s in samples)
        delays = [d * 1000 for s in samples for d in chunk_delays(s.stream, s.completion)]
        paths[path] = {
            "ttft_ms": quantiles([s.ttft_ms for s in samples]),
            "answer_ms": quantiles([s.answer_ms for s in samples]),
            "chunk_delay_ms": quantiles(delays),
            "chunks_per_answer": statistics.median(len(s.stream.chunks) for s in samples),
            "tokens_per_answer": statistics.median(s.completion.predicted_n or 0 for s in samples),
            "backend_cpu_ms_per_token": 1000 * sum(s.backend_cpu_seconds for s in samples) / tokens,
            "backend_cpu_ms_per_answer": 1000 * statistics.fmean(s.backend_cpu_seconds for s in samples),
        }
    added = {
        f"{path}_vs_{base}": {
            "added_ttft_ms": _paired_ms(rounds, path, base, "ttft_ms"),
            "added_answer_ms": _paired_ms(rounds, path, base, "answer_ms"),
        }
        for path, base in (
            ("graphql", "direct"),
            ("nginx", "direct"),
            ("v1", "direct"),
            ("nginx", "graphql"),
            ("v1", "graphql"),
        )
    }
    verdicts = {}
    for path in JUDGED:
        figures = {
            **added[f"{path}_vs_direct"],
            "chunk_delay_p99_ms": paths[path]["chunk_delay_ms"]["p99"],
        }
        verdicts[path] = {
            name: {"value": value, "target": TARGETS[name], "met": value <= TARGETS[name]}
            for name, value in figures.items()
        }
    return {
        "scenario": scenario,
        "model": model,
        "pace_seconds_per_token": PACE[scenario],
        "n_predict": n_predict,
        "rounds": len(rounds),
        "paths": paths,
        "added": added,
        "verdicts": verdicts,
    }


def _direct_body(stack: InferenceStack, prompt: str, n_predict: int, ctx_size: int) -> dict[str, Any]:
    """The exact `/completion` body the backend sends for a first question (greedy)."""
    tokenizer = tokenizer_at(stack.tokenizer_dir)
    ids = build_prompt(tokenizer, stack.system_prompt, [], prompt, ctx_size, n_predict)
    return {"prompt": ids, "n_predict": n_predict, "stop": STOP, "temperature": 0.0}


@pytest.mark.parametrize("scenario", list(PACE))
@pytest.mark.benchmark(group="inference-path")
def test_inference_path_overhead(
    benchmark: Any,
    runner: asyncio.Runner,
    request: pytest.FixtureRequest,
    latency_stack: InferenceStack,
    scenario: str,
) -> None:
    stack = latency_stack
    option = "--inference-rounds" if scenario == "served" else "--paced-rounds"
    rounds_wanted = int(request.config.getoption(option))
    stack.capture.pace(PACE[scenario])
    process = psutil.Process(stack.backend_pid)
    http = httpx.AsyncClient(timeout=120)
    ctx_size = httpx.get(f"{stack.llama_url}/props").json()["default_generation_settings"]["n_ctx"]
    n_predict = min(N_PREDICT[scenario], ctx_size // 2)  # the backend allows at most half the slot's context
    bodies = {p: _direct_body(stack, p, n_predict, ctx_size) for p in PROMPTS}
    token = runner.run(register(http, stack.graphql_url, f"bench-inference-{scenario}@example.com"))
    [model] = [
        m["id"]
        for m in httpx.get(f"{stack.api_url}/models", headers={"Authorization": f"Bearer {token}"}).json()[
            "data"
        ]
    ]
    connections = AsyncExitStack()
    sockets = {
        path: runner.run(connections.enter_async_context(chat_socket(url, token)))
        for path, url in (("graphql", stack.ws_url), ("nginx", stack.nginx_ws_url))
    }
    runs: dict[str, Callable[[str], Awaitable[Stream]]] = {
        "direct": lambda prompt: stream_completion(http, stack.llama_url, bodies[prompt]),
        "graphql": lambda p: sockets["graphql"].chat(p, maxTokens=n_predict, temperature=0.0),
        "nginx": lambda p: sockets["nginx"].chat(p, maxTokens=n_predict, temperature=0.0),
        "v1": lambda p: stream_chat_completion(http, stack.api_url, token, model, p, n_predict),
    }
    recorded: list[dict[str, Sample]] = []
    index = iter(range(10**6))

    async def one_round(record: bool) -> None:
        i = next(index)
        prompt = PROMPTS[i % len(PROMPTS)]
        order = PATHS[i % len(PATHS) :] + PATHS[: i % len(PATHS)]
        samples: dict[str, Sample] = {}
        for path in order:
            before = process.cpu_times()
            stream = await runs[path](prompt)
            after = process.cpu_times()
            assert stream.error is None, stream.error
            [completion] = [c for c in stack.capture.new_records() if c.prompt == bodies[prompt]["prompt"]]
            cpu = (after.user - before.user) + (after.system - before.system)
            samples[path] = Sample(stream, completion, cpu)
        texts = {path: s.stream.text for path, s in samples.items()}
        counts = {path: s.completion.predicted_n for path, s in samples.items()}
        assert len(set(texts.values())) == 1, f"the paths must stream the same tokens: {texts}"
        assert len(set(counts.values())) == 1, f"llama-server generated different counts: {counts}"
        if record:
            recorded.append(samples)

    try:
        for _ in range(WARMUP_ROUNDS[scenario]):
            runner.run(one_round(record=False))
        benchmark.pedantic(lambda: runner.run(one_round(record=True)), rounds=rounds_wanted, iterations=1)
    finally:
        runner.run(connections.aclose())
        runner.run(http.aclose())
        stack.capture.pace(0.0)
    benchmark.extra_info.update(summarize(recorded, scenario, stack.model, n_predict))
