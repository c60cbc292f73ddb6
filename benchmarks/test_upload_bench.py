"""`/healthz` latency while one user uploads UPLOADS documents at once (parsing, cutting into passages and
tantivy commits), against the same probes with the backend idle, in one run: uploads run on the CPU pool and
a worker thread, so the event loop keeps answering."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from benchmarks.report import quantiles
from tests.conftest import Backend
from tests.reliability.client import register
from tests.support.uploads import upload

PROBES = 40
PROBE_GAP_SECONDS = 0.05
UPLOADS = 8
# 1 MB of prose per file: ~1000 passages each, a tenth of CHAKOR_MAX_DOCUMENT_BYTES.
PARAGRAPH = "The survey ship logged comet dust, solar wind and radio echoes over the long night. " * 4
FILE_BYTES = 1_000_000


async def _probe(http: httpx.AsyncClient, url: str, during: asyncio.Future[Any] | None = None) -> list[float]:
    """Seconds each `/healthz` took, PROBE_GAP_SECONDS apart: PROBES of them, or as many as fit while
    `during` runs."""
    took: list[float] = []
    while (len(took) < PROBES) if during is None else not during.done():
        start = time.perf_counter()
        response = await http.get(url)
        took.append(time.perf_counter() - start)
        assert response.status_code == 200
        await asyncio.sleep(PROBE_GAP_SECONDS)
    return took


async def _round(backend: Backend) -> dict[str, Any]:
    text = ("\n\n".join([PARAGRAPH] * (FILE_BYTES // (len(PARAGRAPH) + 2))) + "\n").encode()
    async with httpx.AsyncClient(base_url=backend.url, timeout=300) as http:
        token = await register(http, backend.graphql_url, f"bench-upload-{time.time_ns()}@example.com")
        health = f"{backend.url}/healthz"
        idle = await _probe(http, health)
        started = time.perf_counter()
        load = asyncio.ensure_future(
            asyncio.gather(*(upload(http, token, f"survey-{n}.txt", text, "bench") for n in range(UPLOADS)))
        )
        busy = await _probe(http, health, during=load)
        results = await load
        seconds = time.perf_counter() - started
    assert all(r["__typename"] == "Document" for r in results), results
    idle_q, busy_q = quantiles(idle), quantiles(busy)
    return {
        "uploads": UPLOADS,
        "file_bytes": len(text),
        "passages_per_file": results[0]["passages"],
        "upload_seconds_all": seconds,
        "healthz_ms_idle": {k: v if k == "n" else v * 1000 for k, v in idle_q.items()},
        "healthz_ms_busy": {k: v if k == "n" else v * 1000 for k, v in busy_q.items()},
        "healthz_max_ms_idle": max(idle) * 1000,
        "healthz_max_ms_busy": max(busy) * 1000,
        "healthz_p50_ratio_busy_vs_idle": busy_q["p50"] / idle_q["p50"] if idle_q["p50"] else None,
    }


@pytest.mark.benchmark(group="uploads")
def test_healthz_while_documents_upload(benchmark: Any, runner: asyncio.Runner, backend: Backend) -> None:
    figures: dict[str, Any] = {}

    def one_round() -> None:
        figures.update(runner.run(_round(backend)))

    benchmark.pedantic(one_round, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
