"""Security headers on the API's answers: its JSON is data, never a page to render or frame."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_POLICY = b"default-src 'none'; frame-ancestors 'none'"
# The GraphiQL page: scripts and styles from this host only (inline styles: its editor sets them),
# fonts inlined in its CSS, queries and subscriptions to this host.
PLAYGROUND_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; font-src data:; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Add `Content-Security-Policy` (nothing may load or frame it) and `nosniff` to non-HTML answers.

    The GraphiQL page (HTML) sets its own policy (PLAYGROUND_POLICY).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                content_type = dict(headers).get(b"content-type", b"")
                headers.append((b"x-content-type-options", b"nosniff"))
                if not content_type.startswith(b"text/html"):
                    headers.append((b"content-security-policy", API_POLICY))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
