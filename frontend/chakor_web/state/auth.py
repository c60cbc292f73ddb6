"""Session state: the signed-in user, and a reference to their server-side session (never a token).

Tokens live in `chakor_web.sessions` (found by the HttpOnly session cookie); this state only holds
backend-only vars (leading underscore), which Reflex never sends to the browser. Logging in and
registering are form POSTs to `chakor_web.server` (it sets the cookie); every page's on_load first
runs `restore_session`, so a reload or a new tab finds the session again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qs, urlsplit

import reflex as rx
from reflex.event import EventSpec

from chakor_web.api import ApiError, execute
from chakor_web.sessions import Session, session_id_from, store

USER_FIELDS = "id email displayName role disabled"
AUTH_FIELDS = f"accessToken refreshToken user {{ {USER_FIELDS} }}"
REFRESH = f"mutation($token: String!) {{ refreshToken(refreshToken: $token) {{ {AUTH_FIELDS} }} }}"
LOGOUT = "mutation($token: String!) { logout(refreshToken: $token) }"
SESSION_EXPIRED = "Your session has expired. Please log in again."
REFRESH_MARGIN_SECONDS = 60
_refresh_locks: dict[str, asyncio.Lock] = {}  # one refresh per session at a time, across its tabs


def _expires_at(token: str) -> float:
    """The `exp` claim of a JWT (read, not verified: the backend verifies); 0 when unreadable."""
    try:
        body = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return 0.0


class AuthState(rx.State):
    """The signed-in user; every page state derives from it."""

    _session_id: str = ""  # backend-only: the session cookie's value
    user_id: str = ""
    email: str = ""
    display_name: str = ""
    role: str = ""
    notice: str = ""
    form_error: str = ""

    @rx.var
    def logged_in(self) -> bool:
        return bool(self.user_id)

    @rx.var
    def is_admin(self) -> bool:
        return self.role.lower() == "admin"

    @rx.var
    def user_label(self) -> str:
        return self.display_name or self.email

    def _show_user(self, user: dict[str, Any]) -> None:
        self.user_id, self.email = user["id"], user["email"]
        self.display_name = user.get("displayName") or ""
        self.role = user["role"]

    def _sign_out(self, notice: str = "") -> None:
        if self._session_id:
            store().delete(self._session_id)
        self._session_id = ""
        self.user_id = self.email = self.display_name = self.role = ""
        self.notice = notice

    def _forwarded(self) -> str:
        """The browser's address for the backend's rate limits."""
        return self.router.session.client_ip

    def _session(self) -> Session | None:
        return store().get(self._session_id)

    async def _refresh(self, stale: str) -> bool:
        """Swap the session's refresh token for new tokens, unless another tab did already since
        `stale` was read; False (and signed out) when it no longer works."""
        lock = _refresh_locks.setdefault(self._session_id, asyncio.Lock())
        async with lock:
            session = self._session()
            if session is None:
                self._sign_out(SESSION_EXPIRED)
                return False
            if session.access_token != stale:
                return True
            try:
                data = await execute(REFRESH, {"token": session.refresh_token}, forwarded=self._forwarded())
            except ApiError:
                self._sign_out(SESSION_EXPIRED)
                return False
            payload = data["refreshToken"]
            store().update(self._session_id, payload["accessToken"], payload["refreshToken"], payload["user"])
            self._show_user(payload["user"])
            return True

    async def _live_token(self) -> str:
        """An access token that is valid for a while (refreshed first when about to expire); '' if none."""
        session = self._session()
        if session is None:
            return ""
        if _expires_at(session.access_token) - time.time() < REFRESH_MARGIN_SECONDS:
            if not await self._refresh(session.access_token):
                return ""
            session = self._session()
        return session.access_token if session else ""

    async def _gql(
        self, query: str, variables: dict[str, Any] | None = None, upload: tuple[str, bytes] | None = None
    ) -> Any:
        """Run an authenticated operation (with a file for `$file`: `upload`), refreshing the access
        token once when it has expired.

        Raises ApiError; `self.logged_in` is False afterwards when the session could not be renewed.
        """
        session = self._session()
        if session is None:
            self._sign_out(SESSION_EXPIRED)
            raise ApiError(SESSION_EXPIRED, "UNAUTHENTICATED")
        try:
            return await execute(query, variables, session.access_token, self._forwarded(), upload)
        except ApiError as exc:
            if not exc.unauthenticated or not await self._refresh(session.access_token):
                raise
        return await execute(query, variables, await self._live_token(), self._forwarded(), upload)

    def _expired_redirect(self) -> EventSpec | None:
        """A redirect to /login when signed out (never signed in, or the last call ended the session)."""
        return None if self.logged_in else rx.redirect("/login")

    @rx.event
    def restore_session(self) -> None:
        """First on_load of every page: find the browser's session from its HttpOnly cookie."""
        session_id = session_id_from(self.router.headers.cookie)
        if session_id == self._session_id and self.logged_in:
            return
        session = store().get(session_id)
        if session is None:
            self._session_id = ""
            self.user_id = self.email = self.display_name = self.role = ""
            return
        self._session_id = session_id
        self._show_user(session.user)
        self.notice = ""

    @rx.event
    async def logout(self) -> EventSpec:
        session = self._session()
        if session is not None:
            with suppress(ApiError):  # the session ends here either way
                await execute(LOGOUT, {"token": session.refresh_token}, session.access_token)
        self._sign_out("You have been logged out.")
        return rx.redirect("/login")

    @rx.event
    def clear_form(self) -> None:
        """on_load of the login/register pages; shows the one-time message of the form POST that
        redirected here: a refusal (`?error=`) or a note such as "awaiting approval" (`?notice=`)."""
        query = parse_qs(urlsplit(str(self.router.url)).query)
        flashed = {
            kind: store().take_flash(ids[0]) for kind, ids in query.items() if kind in ("error", "notice")
        }
        self.form_error = flashed.get("error", "")
        if self.form_error or "notice" in flashed:
            self.notice = flashed.get("notice", "")
