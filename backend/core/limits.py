"""An ASGI middleware refusing HTTP bodies and WebSocket messages over one size limit before they are
parsed, so an operation (an import, a chat turn) meets the same limit over either transport. A path
may have a limit of its own (the upload route's is a file's size)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MESSAGE_TOO_BIG = 1009  # the WebSocket close code for a message over the limit (RFC 6455 7.4.1)


class BodyTooLarge(Exception):
    """The body grew past the limit while being read."""


class BodySizeLimit:
    """Answer 413 to HTTP requests whose body exceeds `max_bytes` (or `paths[path]` for those paths),
    refused on a larger Content-Length at once and otherwise as soon as the bytes read pass it; close a
    WebSocket (1009) whose client sends a message over it (the app sees the client leave)."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths or {}

    async def _reject(self, send: Send, limit: int) -> None:
        body = json.dumps({"errors": [{"message": f"request body larger than {limit} bytes"}]})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        closed = False

        async def limited_receive() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] == "websocket.receive":
                text, data = message.get("text"), message.get("bytes")
                size = len(text.encode("utf-8", "surrogatepass")) if text is not None else len(data or b"")
                if size > self.max_bytes:
                    closed = True
                    reason = f"message larger than {self.max_bytes} bytes"
                    await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG, "reason": reason})
                    return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}
            return message

        async def quiet_after_close(message: Message) -> None:
            if not closed:  # the app's own goodbye to a socket closed here already
                await send(message)

        await self.app(scope, limited_receive, quiet_after_close)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"].rstrip("/"), self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send, limit)
