"""CHAKOR_LLAMA_EXTRA_URLS in use: the pool prefers an idle llama-server and fails over at request time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse

from backend.services.llama import Completion, LlamaPool
from common.process import ManagedProcess, free_port
from tests.conftest import start_slow_llama

BODY = {"prompt": [1, 2, 3], "n_predict": 8, "temperature": 0}


@pytest.fixture
def two_servers(slow_gguf: Path, logs_dir: Path) -> Iterator[tuple[ManagedProcess, ManagedProcess]]:
    """Two real llama-servers on the slow model (tens of tokens/s: a long answer keeps a slot busy), one slot each."""
    first = start_slow_llama(slow_gguf, logs_dir / "pool", free_port())
    try:
        second = start_slow_llama(slow_gguf, logs_dir / "pool", free_port())
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


def base_url(process: ManagedProcess) -> str:
    assert process.health_url is not None
    return process.health_url.removesuffix("/health")


@pytest.fixture
async def pool(two_servers: tuple[ManagedProcess, ManagedProcess]) -> AsyncIterator[LlamaPool]:
    pool = LlamaPool([base_url(p) for p in two_servers])
    yield pool
    await pool.close()


async def answer(pool: LlamaPool) -> Completion:
    items = [item async for item in pool.complete(BODY)]
    assert isinstance(items[-1], Completion)
    return items[-1]


async def test_a_busy_server_is_passed_over_for_an_idle_one(
    pool: LlamaPool, two_servers: tuple[ManagedProcess, ManagedProcess]
) -> None:
    busy, idle = pool.servers
    long = {"prompt": [1, 2, 3], "n_predict": 1500, "ignore_eos": True, "temperature": 0, "stream": True}
    async with (
        httpx.AsyncClient(timeout=60) as http,
        aconnect_sse(http, "POST", f"{busy.url}/completion", json=long) as source,
    ):
        events = source.aiter_sse()  # kept open: closing it would end the request and free the slot
        assert (await anext(events)).data  # the first token: the busy server's slot is taken
        for _ in range(2):  # both rotation orders
            await pool.probe_all()
            assert [(s.url, s.slots_idle) for s in await pool.candidates()] == [(idle.url, 1), (busy.url, 0)]
        done = await answer(pool)
    assert done.tokens_predicted == 8
    assert (idle.tokens_generated, busy.tokens_generated) == (8, 0)


async def test_a_server_that_dies_after_its_health_check_is_failed_over_at_request_time(
    pool: LlamaPool, two_servers: tuple[ManagedProcess, ManagedProcess]
) -> None:
    dying, survivor = pool.servers
    while (await pool.candidates())[0] is dying:  # the next call puts `dying` first (round robin on ties)
        pass
    two_servers[0].kill()  # healthy at its last probe (under PROBE_TTL ago), dead now
    done = await answer(pool)
    assert done.tokens_predicted == 8
    assert survivor.tokens_generated == 8
    # Marked down by the failed request itself: its last probe had said "ok".
    assert (dying.healthy, dying.status) == (False, "ok")
    assert [s.url for s in await pool.candidates()] == [survivor.url]
