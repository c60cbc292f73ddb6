"""A pass-through proxy in front of the real llama-server that paces streamed tokens like a real model.

The tiny test model writes ~8000 tokens/s, so a whole answer arrives in one UI update. Through this proxy each
server-sent event of `/completion` is delayed by `delay` seconds; everything else (health, slots, props)
passes through untouched. A client that disconnects closes the upstream request, as it would directly.
Setting `down = True` makes it answer 503 to everything, like a llama-server that is loading or broken;
setting `reply` to a text makes `/completion` stream exactly that text (to test how answers are rendered).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator
from types import TracebackType

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from common.process import free_port

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "host"}


class SlowLlama:
    """`with SlowLlama(upstream, delay) as proxy:` serves on `proxy.url` until the block ends."""

    def __init__(self, upstream: str, delay: float) -> None:
        self.upstream, self.delay = upstream, delay
        self.down = False
        self.reply: str | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def _paced(self, upstream: httpx.Response, client: httpx.AsyncClient) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            async for chunk in upstream.aiter_bytes():
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    await asyncio.sleep(self.delay)
                    yield event + b"\n\n"
            if buffer:
                yield buffer
        finally:
            await upstream.aclose()
            await client.aclose()

    async def _scripted(self, text: str) -> AsyncIterator[bytes]:
        pieces = re.findall(r"\S*\s*", text)[:-1]
        for piece in pieces:
            await asyncio.sleep(self.delay)
            yield f"data: {json.dumps({'content': piece, 'stop': False})}\n\n".encode()
        timings = {"predicted_n": len(pieces), "predicted_per_second": 1 / self.delay}
        final = {"content": "", "stop": True, "stop_type": "eos", "timings": timings}
        yield f"data: {json.dumps(final)}\n\n".encode()

    async def _forward(self, request: Request) -> Response:
        if self.down:
            return JSONResponse({"error": {"code": 503, "message": "unavailable (test)"}}, 503)
        if self.reply is not None and request.url.path == "/completion":
            return StreamingResponse(self._scripted(self.reply), media_type="text/event-stream")
        client = httpx.AsyncClient(base_url=self.upstream, timeout=None)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        upstream_request = client.build_request(
            request.method,
            request.url.path,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        upstream = await client.send(upstream_request, stream=True)
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
        if "text/event-stream" in upstream.headers.get("content-type", ""):
            return StreamingResponse(self._paced(upstream, client), upstream.status_code, out_headers)
        body = await upstream.aread()
        await upstream.aclose()
        await client.aclose()
        return Response(body, upstream.status_code, out_headers)

    def __enter__(self) -> SlowLlama:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the slow llama proxy did not start")
            threading.Event().wait(0.05)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
