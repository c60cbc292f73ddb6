"""Settings page state: change password (theme is switched client-side by Reflex's color mode)."""

from __future__ import annotations

import reflex as rx
from reflex.event import EventSpec

from chakor_web.api import ApiError
from chakor_web.state.auth import AuthState

CHANGE_PASSWORD = (
    "mutation($old: String!, $new: String!) { changePassword(oldPassword: $old, newPassword: $new) }"
)


class SettingsState(AuthState):
    """The /settings page."""

    password_error: str = ""

    @rx.event
    def open_page(self) -> EventSpec | None:
        self.password_error = ""
        return self._expired_redirect()

    @rx.event
    async def change_password(self, form: dict[str, str]) -> EventSpec | None:
        old, new = form.get("old_password", ""), form.get("new_password", "")
        if not old or not new:
            self.password_error = "Enter your current and your new password."
            return None
        if new != form.get("confirm", ""):
            self.password_error = "The new passwords do not match."
            return None
        try:
            await self._gql(CHANGE_PASSWORD, {"old": old, "new": new})
        except ApiError as exc:
            self.password_error = exc.message
            return self._expired_redirect()
        self._sign_out("Password changed. Please log in with your new password.")
        return rx.redirect("/login")
