"""A recording (and optionally pacing) proxy in front of a real llama-server, run as its own process.

Benchmarks put it between every client (direct, backend) and llama-server, so each token has a reference
time: when it left for the client. Each `/completion` stream is recorded as a `Completion` (prompt ids,
each server-sent event's content and the `time.perf_counter()` it was forwarded at, llama-server's own
token count). `perf_counter` is CLOCK_MONOTONIC on Linux, shared by all processes, so the benchmark can
compare these times with its own receive times. With a pace of D seconds, every event waits D before it
is forwarded, like a model that writes a token every D seconds (1/30 s: a 7B on a consumer GPU).

Control endpoints (not llama-server's): `GET /_capture/records?since=N` (records N onwards) and
`POST /_capture/pace?seconds=D`. Everything else passes through unchanged.

usage: python -m tests.support.capture_llama UPSTREAM_URL PORT [PACE_SECONDS]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common.process import ManagedProcess, free_port

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "host"}


@dataclass
class Completion:
    """One `/completion` stream as llama-server wrote it (times: when each event was forwarded)."""

    prompt: list[int] | str
    contents: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    predicted_n: int | None = None

    @property
    def text(self) -> str:
        return "".join(self.contents)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Completion:
        return cls(**data)


def create_app(upstream: str, pace: float) -> Any:
    """The proxy's ASGI app (Starlette)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    records: list[Completion] = []
    state = {"pace": pace}
    client = httpx.AsyncClient(base_url=upstream, timeout=None)

    async def relay(response: httpx.Response, record: Completion) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            async for chunk in response.aiter_bytes():
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    if state["pace"]:
                        await asyncio.sleep(state["pace"])
                    _note(record, event)
                    yield event + b"\n\n"
            if buffer:
                yield buffer
        finally:
            await response.aclose()

    async def forward(request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        upstream_request = client.build_request(
            request.method, request.url.path, params=request.query_params, headers=headers, content=body
        )
        response = await client.send(upstream_request, stream=True)
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
        if request.url.path == "/completion" and "text/event-stream" in response.headers.get(
            "content-type", ""
        ):
            record = Completion(prompt=json.loads(body).get("prompt", ""))
            records.append(record)
            return StreamingResponse(relay(response, record), response.status_code, out_headers)
        content = await response.aread()
        await response.aclose()
        return Response(content, response.status_code, out_headers)

    async def list_records(request: Request) -> Response:
        since = int(request.query_params.get("since", 0))
        return JSONResponse([asdict(r) for r in records[since:]])

    async def set_pace(request: Request) -> Response:
        state["pace"] = float(request.query_params["seconds"])
        return JSONResponse(state)

    return Starlette(
        routes=[
            Route("/_capture/records", list_records, methods=["GET"]),
            Route("/_capture/pace", set_pace, methods=["POST"]),
            Route("/{path:path}", forward, methods=["GET", "POST"]),
        ]
    )


def _note(record: Completion, event: bytes) -> None:
    """Record one server-sent event's content (and the final token count) at the moment it is forwarded."""
    now = time.perf_counter()
    for line in event.splitlines():
        if not line.startswith(b"data: "):
            continue
        data = json.loads(line[6:])
        if data.get("content"):
            record.contents.append(data["content"])
            record.times.append(now)
        if data.get("stop"):
            record.predicted_n = int((data.get("timings") or {}).get("predicted_n", 0))


class CaptureClient:
    """The benchmark's handle on a running proxy."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._seen = 0

    def pace(self, seconds: float) -> None:
        httpx.post(f"{self.url}/_capture/pace", params={"seconds": seconds}).raise_for_status()

    def new_records(self) -> list[Completion]:
        """Completions recorded since the last call."""
        response = httpx.get(f"{self.url}/_capture/records", params={"since": self._seen})
        records = [Completion.from_json(r) for r in response.raise_for_status().json()]
        self._seen += len(records)
        return records


@contextmanager
def capture_proxy(upstream: str, log_dir: Path, pace: float = 0.0) -> Iterator[CaptureClient]:
    """The proxy as a child process in front of `upstream` for the block; yields its client."""
    port = free_port()
    process = ManagedProcess(
        name="capture-llama",
        argv=[sys.executable, "-m", "tests.support.capture_llama", upstream, str(port), str(pace)],
        log_path=log_dir / f"capture-llama-{port}.log",
        cwd=Path(__file__).resolve().parents[2],
        health_url=f"http://127.0.0.1:{port}/health",
    )
    process.start().wait_healthy(timeout=60)
    try:
        yield CaptureClient(f"http://127.0.0.1:{port}")
    finally:
        process.stop()


def main() -> None:
    import uvicorn

    upstream, port = sys.argv[1], int(sys.argv[2])
    pace = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    uvicorn.run(create_app(upstream, pace), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
