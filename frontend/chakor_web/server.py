"""HTTP pieces around the Reflex app: the login and registration endpoints that set the session
cookie, and the security headers (Content-Security-Policy) on every response.

Login and registration are plain form POSTs, not Reflex events, so that the answer can set an
HttpOnly cookie and the password and tokens never travel over the page's event WebSocket.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from reflex.utils import prerequisites
from reflex_base import constants
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chakor_web.api import ApiError, execute
from chakor_web.sessions import COOKIE, SECURE_COOKIE, store
from common.hosts import is_trusted, trusted_networks
from common.response_headers import Headers
from common.settings import get_settings

LOGIN_PATH = "/_chakor/login"
REGISTER_PATH = "/_chakor/register"
MAX_FORM_BYTES = 4096
USER_FIELDS = "id email displayName role disabled"
LOGIN = (
    "mutation($email: String!, $password: String!) { login(email: $email, password: $password) "
    f"{{ accessToken refreshToken user {{ {USER_FIELDS} }} }} }}"
)
REGISTER = (
    "mutation($email: String!, $password: String!, $displayName: String) "
    "{ register(email: $email, password: $password, displayName: $displayName) { user { id } } }"
)
AWAITING_APPROVAL = "Account created. An admin must approve it before you can log in."
BACKEND_AWAITING_APPROVAL = "this account is waiting for an admin's approval"
CHECK_OR_SIGN_IN = "If this address already has an account, sign in with its password."
INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def forwarded_for(request: Request) -> str:
    """X-Forwarded-For for the backend: what reached us, plus our peer (as any proxy appends it)."""
    peer = request.client.host if request.client else ""
    earlier = request.headers.get("x-forwarded-for", "")
    return ", ".join(hop for hop in (earlier, peer) if hop)


def served_over_tls(request: Request) -> bool:
    """Whether the browser reached us over HTTPS: our own scheme, or X-Forwarded-Proto as set by a
    proxy in CHAKOR_TRUSTED_PROXIES (nginx sets it from the real scheme); a client that sends the
    header itself, straight to the app, is not believed."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    if not is_trusted(peer, trusted_networks(get_settings().trusted_proxies)):
        return False
    return request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"


def _same_origin(request: Request) -> bool:
    """Whether a form POST comes from our own page (login CSRF: a foreign page signing you in)."""
    origin = request.headers.get("origin") or request.headers.get("referer") or ""
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _back_to(page: str, message: str, kind: str = "error") -> RedirectResponse:
    """To /login or /register, with a one-time message (`?error=` or `?notice=`)."""
    return RedirectResponse(f"/{page}?{kind}={store().flash(message)}", status_code=303)


async def _form(request: Request) -> dict[str, str] | None:
    """The posted fields; None when the body passes MAX_FORM_BYTES (reading stops there)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    text = body.decode(errors="replace")
    return {key: values[0] for key, values in parse_qs(text).items()}


def _signed_in(request: Request, payload: dict[str, Any]) -> Response:
    """Keep the tokens in a new session, set its cookie, and open the chat."""
    settings = get_settings()
    session_id = store().create(
        payload["accessToken"], payload["refreshToken"], payload["user"], settings.refresh_token_days
    )
    response = RedirectResponse("/", status_code=303)
    secure = served_over_tls(request)
    response.set_cookie(
        SECURE_COOKIE if secure else COOKIE,
        session_id,
        max_age=settings.refresh_token_days * 86400,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return response


_CROSS_SITE = {"login": "cross-site login refused", "register": "cross-site registration refused"}
_MISSING = {"login": "Enter your email and password.", "register": "Enter an email and a password."}


async def _credentials(request: Request, page: str) -> tuple[dict[str, str], str, str] | Response:
    """The form of a same-origin POST from `page` with its email and password, or the response that
    turns it away (cross-site: 403; a field missing: back to the page)."""
    if not _same_origin(request):
        return Response(_CROSS_SITE[page], status_code=403)
    form = await _form(request)
    if form is None:
        return Response(f"form larger than {MAX_FORM_BYTES} bytes", status_code=413)
    email, password = form.get("email", "").strip(), form.get("password", "")
    if not email or not password:
        return _back_to(page, _MISSING[page])
    return form, email, password


async def login(request: Request) -> Response:
    """POST email + password: sign in at the backend, keep the tokens here, set the session cookie."""
    posted = await _credentials(request, "login")
    if isinstance(posted, Response):
        return posted
    _, email, password = posted
    try:
        data = await execute(LOGIN, {"email": email, "password": password}, forwarded=forwarded_for(request))
    except ApiError as exc:
        return _back_to("login", exc.message)
    return _signed_in(request, data["login"])


async def register(request: Request) -> Response:
    """POST the registration form: create the account, then sign in with it as by login.

    The backend answers a sign-up alike whether or not the address had an account, so the login
    decides: it succeeds for the new account; an account waiting for approval goes to /login with
    that note; an address someone registered before (another password) goes to /login with
    CHECK_OR_SIGN_IN, which says no more than that.
    """
    posted = await _credentials(request, "register")
    if isinstance(posted, Response):
        return posted
    form, email, password = posted
    if password != form.get("confirm", ""):
        return _back_to("register", "The passwords do not match.")
    variables = {"email": email, "password": password, "displayName": form.get("display_name") or None}
    forwarded = forwarded_for(request)
    try:
        await execute(REGISTER, variables, forwarded=forwarded)
        data = await execute(LOGIN, {"email": email, "password": password}, forwarded=forwarded)
    except ApiError as exc:
        if exc.code == "FORBIDDEN" and exc.message == BACKEND_AWAITING_APPROVAL:
            return _back_to("login", AWAITING_APPROVAL, kind="notice")
        if exc.unauthenticated:
            return _back_to("login", CHECK_OR_SIGN_IN, kind="notice")
        return _back_to("register", exc.message)
    return _signed_in(request, data["login"])


def routes() -> Starlette:
    """The app's own HTTP routes, mounted in front of Reflex (`api_transformer`)."""
    return Starlette(
        routes=[
            Route(LOGIN_PATH, login, methods=["POST"]),
            Route(REGISTER_PATH, register, methods=["POST"]),
        ]
    )


def _script_hashes(pages: Iterable[Path]) -> list[str]:
    found: set[str] = set()
    for page in pages:
        for body in INLINE_SCRIPT.findall(page.read_bytes()):
            found.add("'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'")
    return sorted(found)


@lru_cache(maxsize=1)
def content_security_policy() -> str:
    """The policy for every response: scripts only from this origin plus the compiled pages' own
    inline scripts (by hash, so no injected script runs), no plugins, no framing, no foreign hosts.

    Styles allow inline: Radix and Emotion set style attributes at run time (no script runs from CSS).
    Scripts allow eval: Reflex runs the code of server-sent events (toasts, `call_script`) with it;
    markup injected into the page still cannot run a script (no 'unsafe-inline').
    """
    static = prerequisites.get_web_dir() / constants.Dirs.STATIC
    hashes = " ".join(_script_hashes(static.rglob("*.html"))) if static.is_dir() else ""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'unsafe-eval' {hashes}".strip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def app_headers(headers: Headers) -> Headers:
    """The app's Content-Security-Policy (replacing any other) and the related headers, on every response."""
    kept = [(k, v) for k, v in headers if k.lower() != b"content-security-policy"]
    return [
        *kept,
        (b"content-security-policy", content_security_policy().encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    ]
