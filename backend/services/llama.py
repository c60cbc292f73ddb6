"""A pool of llama-server instances: health and slot checks, failover, streamed completions.

A completion goes to the healthy server with the most idle slots and fails over to the next while
nothing has been generated; once tokens have come, a failure ends the answer (`LlamaUnavailable`). HTTP goes
through aiohttp because the backend often shares its cores with llama-server, so its CPU per streamed
token is taken from generation: a 17-event answer costs 1.6-2.0 ms of event-loop CPU with aiohttp and
3.5-3.9 ms with httpx + httpx-sse.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2.0)
PROBE_TTL = 1.0  # seconds a healthy server's probe is reused by `candidates`
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=120.0)
# An event is one line; the last one carries llama-server's counters and settings. An unfinished line
# longer than twice this is refused, far above any answer's final event.
READ_BUFFER_BYTES = 1 << 20
# A frame of tokens goes to the client at most this often: tokens that come sooner after the last
# frame wait and go together (the first token, and one after a quiet spell, go at once). At a model's
# full speed on a CPU (1-3 k tokens/s) that is 10-30 tokens a frame instead of one; a token waits at
# most this long, half the 20 ms the chunking delay's p99 may reach.
FRAME_SECONDS = 0.010
DATA = b"data: "
HTTP_ERRORS = (aiohttp.ClientError, TimeoutError)


class LlamaUnavailable(Exception):
    """No llama-server could take the request, or the one serving it failed."""


class Interrupted(Exception):
    """The completion was ended on purpose (`TokenStream.interrupt`: the answer was stopped)."""


@dataclass
class ServerState:
    """What the pool knows about one llama-server."""

    url: str
    healthy: bool = False
    status: str = "unknown"
    slots_total: int | None = None
    slots_idle: int | None = None
    last_tokens_per_second: float | None = None
    tokens_generated: int = 0
    active_requests: int = 0
    probed_at: float = 0.0
    requests_at_probe: int = 0


@dataclass
class TokenChunk:
    """A piece of generated text and how many tokens it holds."""

    text: str
    tokens: int = 1


@dataclass
class Completion:
    """The end of a completion, with llama-server's final counters."""

    tokens_predicted: int
    tokens_per_second: float | None
    finish_reason: str
    timings: dict[str, Any] = field(default_factory=dict)


class LlamaPool:
    """Chooses a healthy, idle llama-server for each completion and fails over to the next."""

    def __init__(self, urls: list[str], api_key: str | None = None) -> None:
        """`api_key`: sent to every server as `Authorization: Bearer` (llama-server's `--api-key`)."""
        self.servers = [ServerState(url=url.rstrip("/")) for url in dict.fromkeys(urls)]
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: aiohttp.ClientSession | None = None
        self._turn = 0
        self._slot_context: int | None = None
        self._probing: dict[str, asyncio.Task[ServerState]] = {}

    async def close(self) -> None:
        """Stop background probes and close the HTTP connections."""
        for task in self._probing.values():
            task.cancel()
        await asyncio.gather(*self._probing.values(), return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    def _http(self) -> aiohttp.ClientSession:
        """The pool's HTTP session (made on first use, inside the running loop as aiohttp requires).

        Connections are not reused: llama-server closes one after a streamed answer without saying
        so, and a request sent on it fails. No connection limit: llama-server's slots bound the work.
        """
        if self._client is None:
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            self._client = aiohttp.ClientSession(
                connector=connector, read_bufsize=READ_BUFFER_BYTES, headers=self._headers
            )
        return self._client

    async def _get(self, url: str) -> tuple[int, bytes]:
        """(status, body) of a GET within PROBE_TIMEOUT."""
        async with self._http().get(url, timeout=PROBE_TIMEOUT) as response:
            return response.status, await response.read()

    async def probe(self, server: ServerState) -> ServerState:
        """Refresh one server's health and slot counts."""
        server.probed_at, server.requests_at_probe = time.monotonic(), server.active_requests
        try:
            status, health = await self._get(f"{server.url}/health")
            server.healthy = status == 200
            server.status = "ok" if server.healthy else json.loads(health).get("error", {}).get("message", "")
            server.status = server.status or f"HTTP {status}"
        except (*HTTP_ERRORS, ValueError, AttributeError) as exc:
            server.healthy, server.status = False, f"unreachable: {type(exc).__name__}"
            server.slots_total = server.slots_idle = None
            return server
        try:
            slots = json.loads((await self._get(f"{server.url}/slots"))[1])
            server.slots_total = len(slots)
            server.slots_idle = sum(1 for slot in slots if not slot.get("is_processing"))
        except (*HTTP_ERRORS, ValueError, TypeError, AttributeError):
            server.slots_total = server.slots_idle = None
        return server

    async def probe_all(self) -> list[ServerState]:
        """Refresh every server."""
        return list(await asyncio.gather(*(self.probe(server) for server in self.servers)))

    async def candidates(self) -> list[ServerState]:
        """Healthy servers, those with idle slots and fewer of our requests first (round robin on ties).

        Probes stay off the request path: servers not probed within PROBE_TTL (and unhealthy ones)
        are probed in the background and the order follows the last probes; only when no server is
        known to be healthy (start-up, every one failed) are the probes awaited. A failed request
        marks its server unhealthy.
        """
        self._turn += 1
        order = (
            self.servers[self._turn % len(self.servers) :] + self.servers[: self._turn % len(self.servers)]
        )
        probes = [self._probe_once(server) for server in order if _stale(server)]
        if not any(server.healthy for server in order):
            await asyncio.gather(*probes)
        healthy = [server for server in order if server.healthy]
        return sorted(healthy, key=lambda s: (-_idle_estimate(s), s.active_requests))

    def _probe_once(self, server: ServerState) -> asyncio.Task[ServerState]:
        """The server's probe in progress, or a new one (never two at once for one server)."""
        task = self._probing.get(server.url)
        if task is None or task.done():
            task = self._probing[server.url] = asyncio.create_task(self.probe(server))
        return task

    async def props(self) -> dict[str, Any] | None:
        """`/props` of the first healthy server (model path, context size, chat template)."""
        for server in self.servers:
            try:
                status, body = await self._get(f"{server.url}/props")
                props = json.loads(body) if status == 200 else None
            except (*HTTP_ERRORS, ValueError):
                continue
            if isinstance(props, dict):
                return props
        return None

    async def slot_context(self) -> int | None:
        """Tokens of context per slot, as the servers report it (`/props`), remembered once known."""
        if self._slot_context is None:
            props = await self.props() or {}
            n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
            self._slot_context = n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None
        return self._slot_context

    def complete(self, request: dict[str, Any]) -> TokenStream:
        """Start a `/completion` on the best server now, failing over while nothing has been generated."""
        return TokenStream(self._failover(request))

    async def _failover(self, request: dict[str, Any]) -> AsyncGenerator[TokenChunk | Completion, None]:
        errors: list[str] = []
        for server in await self.candidates():
            started = False
            server.active_requests += 1
            try:
                async for item in self._stream(server, request):
                    started = True
                    yield item
                return
            except (*HTTP_ERRORS, LlamaUnavailable, ValueError) as exc:
                server.healthy = False
                if started:
                    raise LlamaUnavailable(f"llama-server failed mid-answer: {_describe(exc)}") from exc
                errors.append(f"{server.url}: {_describe(exc)}")
            finally:
                server.active_requests -= 1
        detail = "; ".join(errors) if errors else "none is healthy"
        raise LlamaUnavailable(f"no llama-server available ({detail})")

    async def _stream(
        self, server: ServerState, request: dict[str, Any]
    ) -> AsyncGenerator[TokenChunk | Completion, None]:
        """llama-server's server-sent events, one `data: {json}` line each (read by `relay_events`)."""
        body = {**request, "stream": True, "cache_prompt": True}
        async with self._http().post(
            f"{server.url}/completion", json=body, timeout=STREAM_TIMEOUT
        ) as response:
            if response.status != 200:
                text = (await response.read()).decode(errors="replace")
                raise LlamaUnavailable(f"HTTP {response.status}: {text[:200]}")
            async for item in relay_events(response.content, server):
                yield item


async def relay_events(
    content: aiohttp.StreamReader, server: ServerState
) -> AsyncGenerator[TokenChunk | Completion, None]:
    """llama-server's `/completion` events as they arrive: the tokens of one network read as one
    chunk, then the final `Completion`.

    The hot path of every streamed answer: one read and one split per arrival however many events
    it holds, orjson for each event, one chunk out. LlamaUnavailable for an error event, a line
    over twice READ_BUFFER_BYTES, or a stream that ends without its final event.
    """
    pending = b""
    async for data in content.iter_any():
        pending += data
        if b"\n" not in data:
            if len(pending) > 2 * READ_BUFFER_BYTES:
                raise LlamaUnavailable(f"an event is longer than {2 * READ_BUFFER_BYTES} bytes")
            continue
        *lines, pending = pending.split(b"\n")
        texts: list[str] = []
        for line in lines:
            if not line.startswith(DATA):
                continue  # the blank line between events
            event = orjson.loads(line[len(DATA) :])
            if "error" in event:
                raise LlamaUnavailable(str(event["error"])[:200])
            if text := event.get("content"):
                texts.append(text)
            if event.get("stop"):
                if texts:
                    yield TokenChunk("".join(texts), len(texts))
                yield _completion(server, event)
                return
        if texts:
            yield TokenChunk("".join(texts), len(texts))
    raise LlamaUnavailable("stream ended without a final event")


def _completion(server: ServerState, data: dict[str, Any]) -> Completion:
    timings = data.get("timings") or {}
    predicted = int(timings.get("predicted_n", data.get("tokens_predicted", 0)) or 0)
    speed = timings.get("predicted_per_second")
    server.last_tokens_per_second = float(speed) if speed else server.last_tokens_per_second
    server.tokens_generated += predicted
    stop_type = data.get("stop_type") or ("limit" if data.get("stopped_limit") else "eos")
    reason = {"eos": "stop", "word": "stop", "limit": "length"}.get(stop_type, stop_type)
    return Completion(predicted, float(speed) if speed else None, reason, timings)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _stale(server: ServerState) -> bool:
    return not server.healthy or time.monotonic() - server.probed_at > PROBE_TTL


def _idle_estimate(server: ServerState) -> int:
    """Idle slots at the last probe, less the requests we have sent it since."""
    return (server.slots_idle or 0) - max(0, server.active_requests - server.requests_at_probe)


_Queued = TokenChunk | Completion | Exception | None


async def _pump(
    upstream: AsyncGenerator[TokenChunk | Completion, None],
    queue: asyncio.Queue[_Queued],
    ended: Callable[[], None],
) -> None:
    """Put `upstream`'s items on `queue`, then None at its end or the exception that ended it;
    `ended()` once the item that ends the answer (its `Completion`, None or the exception) is queued."""
    try:
        async with aclosing(upstream):
            async for item in upstream:
                queue.put_nowait(item)
                if not isinstance(item, TokenChunk):
                    ended()
        queue.put_nowait(None)
    except Exception as exc:
        queue.put_nowait(exc)
    ended()


def _drain(first: _Queued, queue: asyncio.Queue[_Queued]) -> list[_Queued]:
    """`first` and everything queued after it, merging consecutive token chunks into one."""
    items: list[_Queued] = [first]
    while not queue.empty() and isinstance(items[-1], TokenChunk):
        item = queue.get_nowait()
        last = items[-1]
        if isinstance(item, TokenChunk) and isinstance(last, TokenChunk):
            items[-1] = TokenChunk(last.text + item.text, last.tokens + item.tokens)
        else:
            items.append(item)
    return items


class TokenStream:
    """A completion that a task reads from creation on: the one relay of GraphQL's `chat` and `/v1`.

    Iterating yields frames: what was read since the last one as one chunk, at most one frame per
    FRAME_SECONDS. The first token, and a token after a pause of FRAME_SECONDS, go at once, so the
    time to first token and a slow model's tokens do not wait; tokens that come faster share a frame,
    so the client's framing and the API's per-event work are paid per frame, not per token. The end
    of the answer ends a frame's wait at once: the last tokens never wait for the clock. `aclose`
    cancels the reader, which closes the HTTP stream, so llama-server stops generating.
    """

    def __init__(self, upstream: AsyncGenerator[TokenChunk | Completion, None]) -> None:
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._ready: deque[_Queued] = deque()
        self._ended = False
        self._framed_at = -FRAME_SECONDS  # loop time of the last frame of tokens
        self._holding: asyncio.Future[None] | None = None  # a frame waiting for more tokens
        self._reader = asyncio.create_task(_pump(upstream, self._queue, self._release))

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> TokenChunk | Completion:
        if not self._ready:
            if self._ended:
                raise StopAsyncIteration
            first = await self._queue.get()
            loop = asyncio.get_running_loop()
            hold = self._framed_at + FRAME_SECONDS - loop.time()
            if hold > 0 and isinstance(first, TokenChunk):
                await self._hold(hold)  # what comes meanwhile joins this frame
            self._ready.extend(_drain(first, self._queue))
        item = self._ready.popleft()
        if isinstance(item, TokenChunk):
            self._framed_at = asyncio.get_running_loop().time()
            return item
        if isinstance(item, Completion):
            return item
        self._ended = True
        if item is None:
            raise StopAsyncIteration
        raise item

    async def _hold(self, seconds: float) -> None:
        """Wait `seconds`, or until the answer's end is queued (`_release`)."""
        loop = asyncio.get_running_loop()
        self._holding = loop.create_future()
        timer = loop.call_later(seconds, self._release)
        try:
            await self._holding
        finally:
            timer.cancel()
            self._holding = None

    def _release(self) -> None:
        """End a frame's wait now."""
        if self._holding is not None and not self._holding.done():
            self._holding.set_result(None)

    async def aclose(self) -> None:
        """Stop reading and close the upstream request (closing again does nothing)."""
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def interrupt(self) -> None:
        """Close the upstream request now and make the reader of this stream get `Interrupted`
        (after what was read already), whether or not a token has come yet."""
        await self.aclose()
        self._queue.put_nowait(Interrupted())
        self._release()
