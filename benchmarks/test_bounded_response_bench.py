"""`/healthz` latency while one user runs the worst accepted query over the widest import allowed
(CHAKOR_MAX_MESSAGES_PER_CONVERSATION = 2000 versions of one first turn), against the same probes with the backend idle, in one run.

Before siblings and allMessages were paged, `allMessages { siblingIds }` over 600 roots answered
9.7 MB in 1.4 s and held `/healthz` for 1.5 s (1 ms idle). The query now answers a page of 100
messages with 100 sibling ids each; what remains is loading the conversation's tree.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from beanie import PydanticObjectId, init_beanie
from pymongo import AsyncMongoClient

from backend.models import DOCUMENT_MODELS
from backend.services import conversations
from benchmarks.healthz import busy_vs_idle, probe
from benchmarks.report import quantiles
from common.settings import load_settings
from tests.conftest import Backend
from tests.reliability.client import register

QUERIES = 2
WORST = "query($id: ID!) { conversation(id: $id) { allMessages(first: 100) { siblingIds(first: 100) } } }"
IMPORT = "mutation($d: String!) { importConversation(data: $d) { id } }"


async def _worst_queries(
    http: httpx.AsyncClient, backend: Backend, token: str, cid: str
) -> list[tuple[float, int]]:
    """Run WORST QUERIES times back to back: (seconds, bytes) of each answer."""
    answers = []
    for _ in range(QUERIES):
        start = time.perf_counter()
        response = await http.post(
            backend.settings.graphql_url,
            json={"query": WORST, "variables": {"id": cid}},
            headers={"Authorization": f"Bearer {token}"},
        )
        answers.append((time.perf_counter() - start, len(response.content)))
        assert "errors" not in response.json()
    return answers


async def _round(backend: Backend) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=300) as http:
        token = await register(http, backend.graphql_url, f"bench-wide-{time.time_ns()}@example.com")
        width = backend.settings.max_messages_per_conversation
        messages = [{"id": f"m{i}", "role": "user", "content": "v"} for i in range(width)]
        document = {"format": "chakor.conversation", "version": 1, "title": "wide", "messages": messages}
        made = await http.post(
            backend.settings.graphql_url,
            json={"query": IMPORT, "variables": {"d": json.dumps(document)}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert made.json().get("data"), made.text
        cid = made.json()["data"]["importConversation"]["id"]
        health = f"{backend.url}/healthz"
        idle = await probe(http, health)
        load = asyncio.ensure_future(_worst_queries(http, backend, token, cid))
        busy = await probe(http, health, during=load)
        answers = await load
    return {
        "nodes": width,
        "worst_query_answers": len(answers),
        "worst_query_bytes_max": max(size for _, size in answers),
        "worst_query_seconds": quantiles([seconds for seconds, _ in answers]),
        **busy_vs_idle(idle, busy, "p99"),
    }


@pytest.mark.benchmark(group="bounded-responses")
def test_healthz_during_the_worst_query(benchmark: Any, runner: asyncio.Runner, backend: Backend) -> None:
    figures: dict[str, Any] = {}

    def one_round() -> None:
        figures.update(runner.run(_round(backend)))

    benchmark.pedantic(one_round, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)


async def _lag(stop: asyncio.Event, out: list[float]) -> None:
    """How late each 5 ms sleep wakes up, until `stop`: what any other request would wait."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.005)
        out.append(time.perf_counter() - start - 0.005)


async def _lag_round(mongo_uri: str, width: int) -> dict[str, Any]:
    """The event loop's lag while this process loads a `width`-node tree from the sidecar, and idle."""
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        await init_beanie(database=client["chakor_bench_lag"], document_models=DOCUMENT_MODELS)
        cid, uid, now = PydanticObjectId(), PydanticObjectId(), datetime.now(UTC)
        docs = [
            {"conversation_id": cid, "user_id": uid, "role": "user", "content": "v", "created_at": now}
            for _ in range(width)
        ]
        for start in range(0, width, 250):
            await client["chakor_bench_lag"].messages.insert_many(docs[start : start + 250])
        figures: dict[str, Any] = {}
        for name, work in (("idle", asyncio.sleep(1.0)), ("loading", conversations.trees([cid]))):
            stop, out = asyncio.Event(), list[float]()
            lagging = asyncio.ensure_future(_lag(stop, out))
            started = time.perf_counter()
            await work
            figures[f"{name}_seconds"] = time.perf_counter() - started
            stop.set()
            await lagging
            figures[f"loop_lag_max_ms_{name}"] = max(out) * 1000
            figures[f"loop_lag_p50_ms_{name}"] = quantiles(out)["p50"] * 1000
        await client["chakor_bench_lag"].messages.delete_many({"conversation_id": cid})
        return {"nodes": width, **figures}
    finally:
        await client.close()


@pytest.mark.benchmark(group="bounded-responses")
def test_event_loop_lag_while_a_wide_tree_loads(
    benchmark: Any, runner: asyncio.Runner, mongo_uri: str
) -> None:
    """The backend's own share of /healthz's wait: a tree load yields every YIELD_EVERY messages."""
    figures: dict[str, Any] = {}
    width = load_settings().max_messages_per_conversation

    def one_round() -> None:
        figures.update(runner.run(_lag_round(mongo_uri, width)))

    benchmark.pedantic(one_round, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
