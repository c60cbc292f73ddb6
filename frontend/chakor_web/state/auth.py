"""Session state: tokens live here, server-side, never in the browser; refreshed transparently."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import reflex as rx
from reflex.event import EventSpec

from chakor_web.api import ApiError, execute

USER_FIELDS = "id email displayName role disabled"
AUTH_FIELDS = f"accessToken refreshToken user {{ {USER_FIELDS} }}"
LOGIN = f"mutation($email: String!, $password: String!) {{ login(email: $email, password: $password) {{ {AUTH_FIELDS} }} }}"
REGISTER = (
    "mutation($email: String!, $password: String!, $displayName: String) "
    "{ register(email: $email, password: $password, displayName: $displayName) { user { approved } } }"
)
AWAITING_APPROVAL = "Account created. An admin must approve it before you can log in."
REFRESH = f"mutation($token: String!) {{ refreshToken(refreshToken: $token) {{ {AUTH_FIELDS} }} }}"
LOGOUT = "mutation($token: String!) { logout(refreshToken: $token) }"
SESSION_EXPIRED = "Your session has expired. Please log in again."
REFRESH_MARGIN_SECONDS = 60


def _expires_at(token: str) -> float:
    """The `exp` claim of a JWT (read, not verified: the backend verifies); 0 when unreadable."""
    try:
        body = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return 0.0


class AuthState(rx.State):
    """The signed-in user and their tokens; every page state derives from it."""

    access_token: str = ""
    refresh_token: str = ""
    user_id: str = ""
    email: str = ""
    display_name: str = ""
    role: str = ""
    notice: str = ""
    form_error: str = ""
    busy: bool = False

    @rx.var
    def logged_in(self) -> bool:
        return bool(self.access_token)

    @rx.var
    def is_admin(self) -> bool:
        return self.role.lower() == "admin"

    @rx.var
    def user_label(self) -> str:
        return self.display_name or self.email

    def _sign_in(self, payload: dict[str, Any]) -> None:
        user = payload["user"]
        self.access_token = payload["accessToken"]
        self.refresh_token = payload["refreshToken"]
        self.user_id, self.email = user["id"], user["email"]
        self.display_name = user.get("displayName") or ""
        self.role = user["role"]

    def _sign_out(self, notice: str = "") -> None:
        self.access_token = self.refresh_token = ""
        self.user_id = self.email = self.display_name = self.role = ""
        self.notice = notice

    async def _refresh(self) -> bool:
        """Swap the refresh token for new tokens; False (and signed out) when it no longer works."""
        if not self.refresh_token:
            return False
        try:
            data = await execute(REFRESH, {"token": self.refresh_token})
        except ApiError:
            self._sign_out(SESSION_EXPIRED)
            return False
        self._sign_in(data["refreshToken"])
        return True

    async def _live_token(self) -> str:
        """An access token that is valid for a while (refreshed first when about to expire); '' if none."""
        if self.access_token and _expires_at(self.access_token) - time.time() < REFRESH_MARGIN_SECONDS:
            await self._refresh()
        return self.access_token

    async def _gql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """Run an authenticated operation, refreshing the access token once when it has expired.

        Raises ApiError; `self.logged_in` is False afterwards when the session could not be renewed.
        """
        try:
            return await execute(query, variables, self.access_token)
        except ApiError as exc:
            if not exc.unauthenticated or not await self._refresh():
                raise
        return await execute(query, variables, self.access_token)

    def _expired_redirect(self) -> EventSpec | None:
        """A redirect to /login when signed out (never signed in, or the last call ended the session)."""
        return None if self.logged_in else rx.redirect("/login")

    @rx.event
    async def login(self, form: dict[str, str]) -> AsyncIterator[EventSpec | None]:
        email, password = form.get("email", "").strip(), form.get("password", "")
        if not email or not password:
            self.form_error = "Enter your email and password."
            return
        self.busy, self.form_error = True, ""
        yield None  # show the button as busy
        try:
            data = await execute(LOGIN, {"email": email, "password": password})
        except ApiError as exc:
            self.form_error = exc.message
            return
        finally:
            self.busy = False
        self._sign_in(data["login"])
        self.notice = ""
        yield rx.redirect("/")

    @rx.event
    async def register(self, form: dict[str, str]) -> AsyncIterator[EventSpec | None]:
        email, password = form.get("email", "").strip(), form.get("password", "")
        if not email or not password:
            self.form_error = "Enter an email and a password."
            return
        if password != form.get("confirm", ""):
            self.form_error = "The passwords do not match."
            return
        variables = {"email": email, "password": password, "displayName": form.get("display_name") or None}
        self.busy, self.form_error = True, ""
        yield None
        try:
            made = (await execute(REGISTER, variables))["register"]
        except ApiError as exc:
            self.form_error = exc.message
            return
        finally:
            self.busy = False
        approved = made["user"]["approved"]
        self.notice = "Account created. Please log in." if approved else AWAITING_APPROVAL
        yield rx.redirect("/login")

    @rx.event
    async def logout(self) -> EventSpec:
        if self.refresh_token:
            with suppress(ApiError):  # the session ends locally either way
                await execute(LOGOUT, {"token": self.refresh_token}, self.access_token)
        self._sign_out("You have been logged out.")
        return rx.redirect("/login")

    @rx.event
    def clear_form(self) -> None:
        """on_load of the login/register pages."""
        self.form_error = ""
        self.busy = False
