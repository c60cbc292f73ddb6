"""The open conversation's settings panel (system prompt, temperature, answer length), export and import."""

from __future__ import annotations

import re

import reflex as rx
from reflex.event import EventSpec

from chakor_web.api import ApiError
from chakor_web.state.chat import ChatState
from common.settings import get_settings

SETTINGS_FIELDS = "id systemPrompt temperature maxTokens"
GET_SETTINGS = f"query($id: ID!) {{ conversation(id: $id) {{ {SETTINGS_FIELDS} }} }}"
CREATE = f"mutation($i: ConversationInput) {{ createConversation(input: $i) {{ {SETTINGS_FIELDS} }} }}"
UPDATE = f"mutation($id: ID!, $i: ConversationInput!) {{ updateConversation(id: $id, input: $i) {{ {SETTINGS_FIELDS} }} }}"
EXPORT = "query($id: ID!, $f: ExportFormat!) { exportConversation(id: $id, format: $f) }"
IMPORT = "mutation($d: String!) { importConversation(data: $d) { id } }"
UPLOAD_ID = "import-upload"


def _number(text: str, kind: type[float] | type[int], name: str) -> float | int | None:
    """`text` as a number, None when empty; ValueError naming `name` when it is not one."""
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None


def _filename(title: str, extension: str) -> str:
    stem = re.sub(r"[^\w-]+", "-", title).strip("-")[:60] or "conversation"
    return f"{stem}.{extension}"


class ConversationToolsState(ChatState):
    """Settings panel, export and import of the open conversation."""

    settings_open: bool = False
    system_prompt: str = ""
    temperature: str = ""
    max_tokens: str = ""
    settings_error: str = ""
    settings_note: str = ""

    @rx.event
    async def open_settings(self) -> EventSpec | None:
        """Show the panel with the conversation's settings (the server's defaults for a new chat)."""
        self.settings_error = self.settings_note = ""
        self.settings_open = True
        if not self.conversation_id:
            self.system_prompt = self.temperature = self.max_tokens = ""
            return None
        try:
            found = (await self._gql(GET_SETTINGS, {"id": self.conversation_id}))["conversation"]
        except ApiError as exc:
            self.settings_error = exc.message
            return self._expired_redirect()
        if found:
            self.system_prompt = found["systemPrompt"]
            self.temperature = "" if found["temperature"] is None else str(found["temperature"])
            self.max_tokens = str(found["maxTokens"])
        return None

    @rx.event
    def close_settings(self) -> None:
        self.settings_open = False

    @rx.event
    def set_open(self, value: bool) -> None:
        self.settings_open = value

    @rx.event
    async def save_settings(self, form: dict[str, str]) -> EventSpec | None:
        """Store the settings; a new chat becomes an (empty) conversation that has them."""
        try:
            changes = {
                "systemPrompt": form.get("system_prompt", "").strip() or None,  # empty: the server's
                "temperature": _number(form.get("temperature", ""), float, "Temperature"),
                "maxTokens": _number(form.get("max_tokens", ""), int, "Max tokens"),
            }
        except ValueError as exc:
            self.settings_error = str(exc)
            return None
        try:
            if self.conversation_id:
                saved = (await self._gql(UPDATE, {"id": self.conversation_id, "i": changes}))[
                    "updateConversation"
                ]
            else:
                saved = (await self._gql(CREATE, {"i": changes}))["createConversation"]
        except ApiError as exc:
            self.settings_error = exc.message
            return self._expired_redirect()
        self.settings_error, self.settings_note = "", "Saved."
        self.system_prompt = saved["systemPrompt"]
        self.temperature = "" if saved["temperature"] is None else str(saved["temperature"])
        self.max_tokens = str(saved["maxTokens"])
        if not self.conversation_id:
            self.settings_open = False
            return rx.redirect(f"/c/{saved['id']}")
        return None

    @rx.event
    async def export(self, format: str) -> EventSpec | None:
        """Download the conversation as JSON (every version) or Markdown (what is shown)."""
        if not self.conversation_id:
            return None
        try:
            data = (await self._gql(EXPORT, {"id": self.conversation_id, "f": format}))["exportConversation"]
        except ApiError as exc:
            self.error = exc.message
            return self._expired_redirect()
        extension = "json" if format == "JSON" else "md"
        return rx.download(data=data, filename=_filename(self.title, extension))

    @rx.event
    async def import_files(self, files: list[rx.UploadFile]) -> EventSpec | None:
        """Import a JSON export as a new conversation and open it."""
        if not files:
            return None
        raw = await files[0].read()
        limit = get_settings().max_request_bytes  # what the backend reads at most (it checks too)
        if len(raw) > limit:
            self.error = f"The file is larger than {limit // 1024} KiB."
            return None
        try:
            made = (await self._gql(IMPORT, {"d": raw.decode("utf-8", errors="replace")}))[
                "importConversation"
            ]
        except ApiError as exc:
            self.error = f"Import failed: {exc.message}"
            return self._expired_redirect()
        return rx.redirect(f"/c/{made['id']}")
