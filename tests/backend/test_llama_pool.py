"""The llama-server pool against real servers: health and slot probes, skipping a dead server."""

from __future__ import annotations

import pytest

from backend.services.llama import Completion, LlamaPool, LlamaUnavailable, TokenChunk
from common.process import free_port


async def test_pool_skips_a_dead_server_and_streams_from_a_live_one(llama_server: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    pool = LlamaPool([dead, llama_server])
    try:
        assert [s.url for s in await pool.candidates()] == [llama_server]
        dead_state, live_state = pool.servers
        assert (dead_state.healthy, dead_state.status) == (False, "unreachable: ClientConnectorError")
        assert (live_state.healthy, live_state.slots_total) == (True, 4)
        items = [
            item async for item in pool.complete({"prompt": [1, 2, 3], "n_predict": 5, "temperature": 0})
        ]
        assert all(isinstance(item, TokenChunk) for item in items[:-1])
        done = items[-1]
        assert isinstance(done, Completion)
        assert (done.tokens_predicted, done.finish_reason) == (5, "length")
        assert live_state.last_tokens_per_second == done.tokens_per_second > 0
        assert live_state.active_requests == 0
        assert await pool.slot_context() == 512
    finally:
        await pool.close()


async def test_pool_with_no_live_server() -> None:
    pool = LlamaPool([f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"])
    try:
        with pytest.raises(LlamaUnavailable, match=r"^no llama-server available \(none is healthy\)$"):
            async for _ in pool.complete({"prompt": [1], "n_predict": 1}):
                pass
        assert await pool.slot_context() is None
    finally:
        await pool.close()


async def test_llama_server_errors_are_reported(llama_server: str) -> None:
    pool = LlamaPool([llama_server])
    try:
        with pytest.raises(LlamaUnavailable, match=r"^no llama-server available \(http://.*: HTTP 400"):
            async for _ in pool.complete({"prompt": [1], "n_predict": 1, "temperature": "hot"}):
                pass
    finally:
        await pool.close()
