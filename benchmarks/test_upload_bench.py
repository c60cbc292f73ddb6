"""`/healthz` latency while one user uploads UPLOADS documents at once (parsing, cutting into passages and
tantivy commits), against the same probes with the backend idle, in one run: uploads run on the CPU pool and
a worker thread, so the event loop keeps answering."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from benchmarks.healthz import busy_vs_idle, probe
from tests.conftest import Backend
from tests.reliability.client import register
from tests.support.uploads import upload

UPLOADS = 8
# 1 MB of prose per file: ~1000 passages each, a tenth of CHAKOR_MAX_DOCUMENT_BYTES.
PARAGRAPH = "The survey ship logged comet dust, solar wind and radio echoes over the long night. " * 4
FILE_BYTES = 1_000_000


async def _round(backend: Backend) -> dict[str, Any]:
    text = ("\n\n".join([PARAGRAPH] * (FILE_BYTES // (len(PARAGRAPH) + 2))) + "\n").encode()
    async with httpx.AsyncClient(base_url=backend.url, timeout=300) as http:
        token = await register(http, backend.graphql_url, f"bench-upload-{time.time_ns()}@example.com")
        health = f"{backend.url}/healthz"
        idle = await probe(http, health)
        started = time.perf_counter()
        load = asyncio.ensure_future(
            asyncio.gather(*(upload(http, token, f"survey-{n}.txt", text, "bench") for n in range(UPLOADS)))
        )
        busy = await probe(http, health, during=load)
        results = await load
        seconds = time.perf_counter() - started
    assert all(r["__typename"] == "Document" for r in results), results
    return {
        "uploads": UPLOADS,
        "file_bytes": len(text),
        "passages_per_file": results[0]["passages"],
        "upload_seconds_all": seconds,
        **busy_vs_idle(idle, busy, "p50"),
    }


@pytest.mark.benchmark(group="uploads")
def test_healthz_while_documents_upload(benchmark: Any, runner: asyncio.Runner, backend: Backend) -> None:
    figures: dict[str, Any] = {}

    def one_round() -> None:
        figures.update(runner.run(_round(backend)))

    benchmark.pedantic(one_round, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
