"""Inter-token latency of a running chat stream while 20 logins (argon2, 64 MiB each, 20 accounts) run at once,
against the same stream without logins, in interleaved rounds on the shared backend.

argon2 runs on a small thread pool (backend/core/offload.py), so the event loop keeps sending tokens;
on the loop, each hash would stall every stream for its whole duration.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest

from benchmarks.report import quantiles
from tests.conftest import Backend
from tests.reliability.client import chat_socket, login, register

ROUNDS = 3
LOGINS = 20
QUESTION = {"content": "Explain the with statement.", "maxTokens": 200, "temperature": 1.0}


async def _gaps(
    backend: Backend, http: httpx.AsyncClient, token: str, emails: list[str], burst: bool
) -> list[float]:
    """Seconds between the stream's chunks after its first token (logins start at that first token)."""
    async with chat_socket(backend.ws_url, token) as socket:
        stream = await socket.send(QUESTION["content"], maxTokens=QUESTION["maxTokens"], temperature=1.0)
        await socket.receive(stream, first_token_only=True)
        logins = (
            asyncio.gather(*(login(http, backend.graphql_url, email) for email in emails)) if burst else None
        )
        await socket.receive(stream)
        if logins is not None:
            await logins
    assert stream.error is None, stream.error
    times = stream.chunk_times
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.benchmark(group="login-burst")
def test_inter_token_p99_during_a_login_burst(
    benchmark: Any, runner: asyncio.Runner, backend: Backend
) -> None:
    http = httpx.AsyncClient(timeout=120)
    token = runner.run(register(http, backend.graphql_url, "bench-burst-reader@example.com"))
    # one account each: a login counts against its account before argon2 runs, so 20 at once on
    # one account would be refused (CHAKOR_LOGIN_MAX_ATTEMPTS) instead of hashing
    emails = [f"bench-burst-login-{i}@example.com" for i in range(LOGINS)]
    for email in emails:
        runner.run(register(http, backend.graphql_url, email))
    quiet: list[float] = []
    busy: list[float] = []

    def one_round() -> None:
        quiet.extend(runner.run(_gaps(backend, http, token, emails, burst=False)))
        busy.extend(runner.run(_gaps(backend, http, token, emails, burst=True)))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    runner.run(http.aclose())
    quiet_q, busy_q = quantiles(quiet), quantiles(busy)
    benchmark.extra_info.update(
        {
            "logins": LOGINS,
            "inter_token_ms_quiet": {k: v if k == "n" else v * 1000 for k, v in quiet_q.items()},
            "inter_token_ms_burst": {k: v if k == "n" else v * 1000 for k, v in busy_q.items()},
            "p99_ratio_burst_vs_quiet": busy_q["p99"] / quiet_q["p99"] if quiet_q["p99"] else None,
        }
    )
