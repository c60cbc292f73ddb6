"""`/healthz` probes: how long the backend's event loop takes to answer while other work runs, against
the same probes with the backend idle (the benchmarks that push CPU work off the loop use these)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from benchmarks.report import quantiles

PROBES = 40  # idle probes; busy ones go on for as long as the work runs
PROBE_GAP_SECONDS = 0.05


async def probe(http: httpx.AsyncClient, url: str, during: asyncio.Future[Any] | None = None) -> list[float]:
    """Seconds each `/healthz` request took, PROBE_GAP_SECONDS apart: PROBES of them, or as many as
    fit while `during` runs."""
    took: list[float] = []
    while (len(took) < PROBES) if during is None else not during.done():
        start = time.perf_counter()
        response = await http.get(url)
        took.append(time.perf_counter() - start)
        assert response.status_code == 200
        await asyncio.sleep(PROBE_GAP_SECONDS)
    return took


def busy_vs_idle(idle: list[float], busy: list[float], ratio_at: str) -> dict[str, Any]:
    """The probes' quantiles and maxima in ms, and busy/idle at the `ratio_at` quantile ("p50", "p99")."""
    idle_q, busy_q = quantiles(idle), quantiles(busy)
    return {
        "healthz_ms_idle": {k: v if k == "n" else v * 1000 for k, v in idle_q.items()},
        "healthz_ms_busy": {k: v if k == "n" else v * 1000 for k, v in busy_q.items()},
        "healthz_max_ms_idle": max(idle) * 1000,
        "healthz_max_ms_busy": max(busy) * 1000,
        f"healthz_{ratio_at}_ratio_busy_vs_idle": busy_q[ratio_at] / idle_q[ratio_at]
        if idle_q[ratio_at]
        else None,
    }
