"""Pool probes stay off the request path: a server whose health check hangs does not hold up a completion."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from backend.services.llama import PROBE_TIMEOUT, Completion, LlamaPool


@dataclass
class HangingServer:
    """Says "Loading model" (503) like a llama-server starting up; its second health check hangs until
    released, and from then on it is healthy with one idle slot."""

    url: str = ""
    health_checks: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        slots = b" /slots " in (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[0]
        if not slots:
            self.health_checks += 1
            if self.health_checks > 1:
                self.arrived.set()
                await self.release.wait()
        status, body = "503 Service Unavailable", json.dumps({"error": {"message": "Loading model"}})
        if self.release.is_set():
            status, body = "200 OK", json.dumps([{"is_processing": False}] if slots else {"status": "ok"})
        data = body.encode()
        head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + data)
        await writer.drain()
        writer.close()


@pytest.fixture
async def hanging() -> AsyncIterator[HangingServer]:
    server = HangingServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    yield server
    server.release.set()
    listener.close()


async def test_a_hanging_probe_does_not_hold_up_a_completion(
    llama_server: str, hanging: HangingServer
) -> None:
    assert PROBE_TIMEOUT.total is not None and PROBE_TIMEOUT.total >= 2  # the hang outlasts the steps below
    pool = LlamaPool([hanging.url, llama_server])
    starting, live = pool.servers
    try:
        # Nothing known yet: the first call waits for both probes.
        assert [s.url for s in await pool.candidates()] == [live.url]
        assert [(s.healthy, s.status) for s in pool.servers] == [(False, "Loading model"), (True, "ok")]
        # The starting server is probed again in the background; the answer streams while that probe hangs.
        body = {"prompt": [1, 2, 3], "n_predict": 4, "temperature": 0}
        done = [item async for item in pool.complete(body)][-1]
        assert isinstance(done, Completion) and done.tokens_predicted == 4
        await hanging.arrived.wait()
        assert [s.url for s in await pool.candidates()] == [live.url]
        assert (starting.healthy, starting.status, hanging.health_checks) == (False, "Loading model", 2)
        hanging.release.set()  # its probe lands: healthy, one idle slot, and a candidate from now on
        for _ in range(100):
            if starting.slots_idle is not None:
                break
            await asyncio.sleep(0.05)
        assert (starting.healthy, starting.status, starting.slots_idle) == (True, "ok", 1)
        assert hanging.health_checks == 2  # one probe at a time per server, however many calls ask
        assert {s.url for s in await pool.candidates()} == {live.url, starting.url}
    finally:
        await pool.close()
