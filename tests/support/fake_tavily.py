"""A local HTTP server that speaks Tavily's `/search` JSON, for the real tavily-python client in tests.

Results are derived from the query, so tests can assert exact values. Tests switch failure modes
and read what the server received over HTTP:
- `POST /_control {"mode": "ok" | "error" | "slow", "delay": seconds}`: "error" answers 500,
  "slow" waits `delay` seconds before answering (a timeout for clients with a shorter one).
- `GET /_requests`: every `/search` request body received so far, with its Authorization header.
- `POST /_reset`: back to "ok" and forget the requests.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import quote


def fake_results(query: str, max_results: int = 5) -> list[dict[str, Any]]:
    """The results the fake returns for `query`."""
    slug = quote(query.lower().replace(" ", "-"), safe="-")
    return [
        {
            "title": f"Result {i} for {query}",
            "url": f"https://example.test/{slug}/{i}",
            "content": f"Snippet {i} about {query}.",
            "score": round(1.0 - i / 10, 2),
        }
        for i in range(1, max_results + 1)
    ]


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, Any] | None:
        """The request's JSON object; None when the client sent less than it announced (it was cancelled
        mid-request, so Tavily would not have answered it either) or something that is not a JSON object."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        if len(raw) < length:
            return None
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def do_GET(self) -> None:
        if self.path == "/_requests":
            with self.server.state.lock:
                self._send(200, list(self.server.state.requests))
        else:
            self._send(404, {"detail": {"error": "not found"}})

    def do_POST(self) -> None:
        state = self.server.state
        body = self._body()
        if body is None:
            self._send(400, {"detail": {"error": "incomplete or invalid JSON body"}})
            return
        if self.path == "/_control":
            with state.lock:
                state.mode = str(body.get("mode", "ok"))
                state.delay = float(body.get("delay", 0.0))
            self._send(200, {"mode": state.mode})
        elif self.path == "/_reset":
            with state.lock:
                state.mode, state.delay, state.requests = "ok", 0.0, []
            self._send(200, {"mode": "ok"})
        elif self.path == "/search":
            with state.lock:
                state.requests.append({"body": body, "authorization": self.headers.get("Authorization")})
                mode, delay = state.mode, state.delay
            if mode == "slow":
                time.sleep(delay)
            if mode == "error":
                self._send(500, {"detail": {"error": "internal error (fake)"}})
                return
            query = str(body.get("query", ""))
            results = fake_results(query, int(body.get("max_results") or 5))
            self._send(
                200, {"query": query, "answer": None, "images": [], "results": results, "response_time": 0.01}
            )
        else:
            self._send(404, {"detail": {"error": "not found"}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class FakeTavily:
    """`with FakeTavily() as server:` serves on 127.0.0.1 at `server.url` until the block ends."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeTavily:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
