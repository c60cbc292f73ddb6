"""One ASGI middleware that rewrites the headers of every HTTP response; the API and the web app each
pass their own rule (their security headers differ: the API's answers are data, the app's are pages)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]


class ResponseHeaders:
    """`rewrite(headers)` gives the headers each HTTP response starts with; WebSockets pass untouched."""

    def __init__(self, app: ASGIApp, rewrite: Callable[[Headers], Headers]) -> None:
        self.app = app
        self.rewrite = rewrite

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": self.rewrite(list(message.get("headers", [])))}
            await send(message)

        await self.app(scope, receive, with_headers)
