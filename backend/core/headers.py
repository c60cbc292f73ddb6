"""Security headers on the API's answers: its JSON is data, never a page to render or frame."""

from __future__ import annotations

from common.response_headers import Headers

API_POLICY = b"default-src 'none'; frame-ancestors 'none'"
# The GraphiQL page: scripts and styles from this host only (inline styles: its editor sets them),
# fonts inlined in its CSS, queries and subscriptions to this host.
PLAYGROUND_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; font-src data:; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def api_headers(headers: Headers) -> Headers:
    """`nosniff` on every answer, and a policy that lets nothing load or frame the non-HTML ones.

    The GraphiQL page (HTML) sets its own policy (PLAYGROUND_POLICY).
    """
    content_type = dict(headers).get(b"content-type", b"")
    headers.append((b"x-content-type-options", b"nosniff"))
    if not content_type.startswith(b"text/html"):
        headers.append((b"content-security-policy", API_POLICY))
    return headers
