"""The API keys page: list, create (the secret is shown once) and revoke."""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx
from reflex.event import EventSpec

from chakor_web.api import ApiError
from chakor_web.state.auth import AuthState

LIST = "query { apiKeys { id name prefix createdAt lastUsedAt } }"
CREATE = "mutation($n: String!) { createApiKey(name: $n) { secret key { id } } }"
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) }"


@dataclass
class KeyRow:
    """One key as the table shows it."""

    id: str = ""
    name: str = ""
    prefix: str = ""
    created: str = ""
    last_used: str = ""


def _day(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "never"


class ApiKeysState(AuthState):
    """The /keys page."""

    keys: rx.Field[list[KeyRow]] = rx.field([])
    new_secret: str = ""
    keys_error: str = ""

    async def _load(self) -> None:
        rows = (await self._gql(LIST))["apiKeys"]
        self.keys = [
            KeyRow(k["id"], k["name"], k["prefix"], _day(k["createdAt"]), _day(k["lastUsedAt"])) for k in rows
        ]

    @rx.event
    async def open_page(self) -> EventSpec | None:
        if not self.logged_in:
            return rx.redirect("/login")
        self.new_secret = self.keys_error = ""
        try:
            await self._load()
        except ApiError as exc:
            self.keys_error = exc.message
        return self._expired_redirect()

    @rx.event
    async def create(self, form: dict[str, str]) -> EventSpec | None:
        name = form.get("name", "").strip()
        if not name:
            self.keys_error = "Give the key a name."
            return None
        try:
            made = (await self._gql(CREATE, {"n": name}))["createApiKey"]
            await self._load()
        except ApiError as exc:
            self.keys_error = exc.message
            return self._expired_redirect()
        self.keys_error, self.new_secret = "", made["secret"]
        return None

    @rx.event
    async def revoke(self, key_id: str) -> EventSpec | None:
        try:
            await self._gql(REVOKE, {"id": key_id})
            await self._load()
        except ApiError as exc:
            self.keys_error = exc.message
        self.new_secret = ""
        return self._expired_redirect()
