"""Chat page state: the conversation list (sidebar), the open conversation and the streaming answer."""

from __future__ import annotations

import time
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import reflex as rx
from reflex.event import EventSpec

from chakor_web.api import ApiError, execute, subscribe
from chakor_web.state.auth import SESSION_EXPIRED, AuthState

PAGE_SIZE = 20
FLUSH_SECONDS = 0.05  # batch streamed tokens into at most ~20 UI updates per second

LIST = """query($first: Int, $after: String, $search: String) {
  conversations(first: $first, after: $after, search: $search) {
    edges { node { id title } }
    pageInfo { hasNextPage endCursor }
  }
}"""
MESSAGE_FIELDS = (
    "id role content status sources { title url collection } sourcesError tokensPerSecond finishReason error"
    " siblingCount siblingIndex previousSiblingId nextSiblingId model"
)
OPEN = f"query($id: ID!) {{ conversation(id: $id) {{ id title model messages {{ {MESSAGE_FIELDS} }} }} }}"
MODELS = """{ models {
  id kind parameters up isDefault description quantization contextLength
  evaluation { passed bitsPerByte qaF1 qaF1Documents }
} }"""
SET_MODEL = "mutation($id: ID!, $m: String) { updateConversation(id: $id, input: {model: $m}) { model } }"
RENAME = "mutation($id: ID!, $title: String!) { renameConversation(id: $id, title: $title) { id title } }"
DELETE = "mutation($id: ID!) { deleteConversation(id: $id) }"
STOP = "mutation($id: ID!) { stopGeneration(messageId: $id) }"
SELECT_BRANCH = "mutation($id: ID!) { selectBranch(messageId: $id) { id } }"
GENERATE_TITLE = "mutation($id: ID!) { generateTitle(id: $id) { id title } }"
SEARCH_MODES = "{ searchModes { mode available } }"
COLLECTION_NAMES = "query { collections { name } }"
ALL_COLLECTIONS = "All collections"  # the collection picker's first choice: no narrowing
# The composer's search choice: label -> the ChatInput.search value, and what an unavailable mode adds.
SEARCH_LABELS = {"Off": "OFF", "Web": "WEB", "Documents": "DOCUMENTS"}
UNAVAILABLE_NOTES = {"WEB": "not configured", "DOCUMENTS": "none indexed"}
CHAT = """subscription($input: ChatInput!) {
  chat(input: $input) {
    __typename
    ... on ChatStarted { conversationId userMessageId assistantMessageId }
    ... on ChatSources { results { title url collection } available error }
    ... on ChatToken { text }
    ... on ChatDone { tokensPerSecond finishReason }
    ... on ChatError { code message }
  }
}"""
LENGTH_NOTE = "Reached the answer length limit."
ERROR_HINTS = {
    "LLAMA_UNAVAILABLE": "The model server is not available right now.",
    "RATE_LIMITED": "Too many requests: wait a moment, then retry.",
    "UNAVAILABLE": "The chat server cannot be reached.",
}


@dataclass
class Source:
    """A search result cited by an answer: a web page (`link`: opens it) or a document passage."""

    title: str = ""
    url: str = ""
    domain: str = ""
    link: bool = False
    collection: str = ""  # the document collection a passage came from ("" for the web)


@dataclass
class ChatMessage:
    """One message as the page shows it."""

    id: str = ""
    role: str = "user"
    content: str = ""
    status: str = "complete"
    sources: list[Source] = field(default_factory=list)
    note: str = ""
    speed: str = ""
    version: int = 1  # which of this message's versions (edits, regenerated answers) this is, from 1
    version_count: int = 1
    previous_version: str = ""  # the ids of the versions beside it ("" at either end)
    next_version: str = ""
    model: str = ""  # the served model that wrote an answer


@dataclass
class ModelChoice:
    """One entry of the model picker: the name turns send, and how the picker shows it."""

    id: str = ""
    label: str = ""
    description: str = ""
    card: str = ""  # the model card in one line: what it is and what its eval measured


def _size(parameters: float | None) -> str:
    """A parameter count as the picker shows it: 1.2M, 350K, 7.0B."""
    if not parameters:
        return "size unknown"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if parameters >= scale:
            return f"{parameters / scale:.1f}{unit}"
    return str(int(parameters))


def _card(model: dict[str, Any]) -> str:
    """`chat model, 1.3M parameters, F16, context 256; eval passed: 3.39 bits/byte, QA F1 0.11 (0.75 with documents)`."""
    facts = f"{model['kind']} model, {_size(model['parameters'])} parameters, {model['quantization'] or '?'}"
    facts += f", context {model['contextLength'] or '?'}"
    card = model["evaluation"]
    if not card:
        return f"{facts}; no eval report"
    scores = [f"{card['bitsPerByte']:.2f} bits/byte"] if card["bitsPerByte"] is not None else []
    if card["qaF1"] is not None:
        with_documents = card["qaF1Documents"]
        extra = "" if with_documents is None else f" ({with_documents:.2f} with documents)"
        scores.append(f"QA F1 {card['qaF1']:.2f}{extra}")
    verdict = "passed" if card["passed"] else "failed"
    return f"{facts}; eval {verdict}" + (f": {', '.join(scores)}" if scores else "")


def _choice(model: dict[str, Any]) -> ModelChoice:
    down = "" if model["up"] else ", down"
    label = f"{model['id']} ({model['kind']}, {_size(model['parameters'])}{down})"
    return ModelChoice(model["id"], label, model["description"], _card(model))


@dataclass
class ConversationItem:
    """One sidebar entry."""

    id: str = ""
    title: str = ""


def _source(result: dict[str, Any]) -> Source:
    """Web pages show their domain and link to it; documents show their path (the browser cannot open it)."""
    url = result["url"]
    parts = urlsplit(url)
    web = parts.scheme in ("http", "https")
    return Source(
        result["title"] or url, url, parts.netloc if web else url, web, result.get("collection") or ""
    )


def _sources(results: list[dict[str, Any]] | None) -> list[Source]:
    return [_source(r) for r in results or []]


def _speed(tokens_per_second: float | None) -> str:
    return f"{tokens_per_second:.1f} tokens/s" if tokens_per_second else ""


def _message(raw: dict[str, Any]) -> ChatMessage:
    status = raw["status"].lower()
    note = raw.get("error") or raw.get("sourcesError") or ""
    if status == "stopped":
        note = "Stopped."
    elif raw.get("finishReason") == "length":
        note = LENGTH_NOTE
    return ChatMessage(
        id=raw["id"],
        role=raw["role"].lower(),
        content=raw["content"],
        status=status,
        sources=_sources(raw.get("sources")),
        note=note,
        speed=_speed(raw.get("tokensPerSecond")),
        version=raw["siblingIndex"] + 1,
        version_count=raw["siblingCount"],
        previous_version=raw["previousSiblingId"] or "",
        next_version=raw["nextSiblingId"] or "",
        model=raw.get("model") or "",
    )


class ChatState(AuthState):
    """Sidebar, open conversation and the answer being streamed."""

    conversations: rx.Field[list[ConversationItem]] = rx.field([])
    next_cursor: str = ""
    search: str = ""
    conversation_id: str = ""
    title: str = ""
    messages: rx.Field[list[ChatMessage]] = rx.field([])
    search_mode: str = "OFF"
    unavailable_modes: list[str] = []
    collection_choices: list[str] = [ALL_COLLECTIONS]
    search_collection: str = ALL_COLLECTIONS
    streaming: bool = False
    live_id: str = ""
    live_text: str = ""
    live_sources: list[Source] = []
    live_note: str = ""
    stop_requested: bool = False
    error: str = ""
    failed_turn: bool = False
    retry_content: str = ""
    rename_id: str = ""
    rename_title: str = ""
    delete_id: str = ""
    edit_id: str = ""
    edit_text: str = ""
    model: str = ""  # the model the open conversation (or the next new one) is answered by
    model_choices: rx.Field[list[ModelChoice]] = rx.field([])
    _default_model: str = ""
    _url_only: bool = False  # the next page load only moves a new chat to its /c/ID URL
    _new_chat: bool = False  # the turn asks the conversation's first question (it gets a generated title)

    @rx.var
    def can_regenerate(self) -> bool:
        return not self.streaming and bool(self.messages) and self.messages[-1].role == "assistant"

    # Sidebar

    async def _load_list(self, append: bool = False) -> None:
        variables = {"first": PAGE_SIZE, "search": self.search.strip() or None}
        if append:
            variables["after"] = self.next_cursor
        data = await self._gql(LIST, variables)
        page = data["conversations"]
        items = [ConversationItem(e["node"]["id"], e["node"]["title"]) for e in page["edges"]]
        self.conversations = [*self.conversations, *items] if append else items
        self.next_cursor = (page["pageInfo"]["endCursor"] or "") if page["pageInfo"]["hasNextPage"] else ""

    @rx.event
    async def load_more(self) -> EventSpec | None:
        try:
            await self._load_list(append=True)
        except ApiError as exc:
            self.error = exc.message
        return self._expired_redirect()

    @rx.event
    async def set_search(self, value: str) -> EventSpec | None:
        self.search = value
        try:
            await self._load_list()
        except ApiError as exc:
            self.error = exc.message
        return self._expired_redirect()

    # Page load

    @rx.event
    async def open_page(self) -> EventSpec | None:
        """on_load of `/` and `/c/[cid]`: the list and, for /c/ID, that conversation."""
        if not self.logged_in:
            return rx.redirect("/login")
        if self._url_only or self.streaming:
            self._url_only = False
            return None
        path = urlsplit(str(self.router.url)).path.rstrip("/")
        wanted = path.removeprefix("/c/") if path.startswith("/c/") else ""
        self.error = self.live_text = self.live_note = self.edit_id = ""
        self.failed_turn = False
        try:
            await self._load_list()
            await self._load_search_modes()
            await self._load_models()
            if wanted:
                data = await self._gql(OPEN, {"id": wanted})
                if data["conversation"] is None:
                    self.error = "This conversation does not exist."
                    self._reset_conversation()
                else:
                    self.conversation_id = wanted
                    self.title = data["conversation"]["title"]
                    self.model = data["conversation"]["model"]
                    self.messages = [_message(m) for m in data["conversation"]["messages"]]
            else:
                self._reset_conversation()
        except ApiError as exc:
            self.error = exc.message
        return self._expired_redirect()

    async def _reload_messages(self) -> None:
        """The open conversation's active branch, as stored (versions included)."""
        data = await self._gql(OPEN, {"id": self.conversation_id})
        if data["conversation"] is not None:
            self.title = data["conversation"]["title"]
            self.messages = [_message(m) for m in data["conversation"]["messages"]]

    @rx.event
    async def switch_version(self, message_id: str, step: int) -> EventSpec | None:
        """Show the previous (`step` -1) or next (+1) version of a message, and the branch below it."""
        if self.streaming:
            return None
        message = next((m for m in self.messages if m.id == message_id), None)
        target = None if message is None else message.previous_version if step < 0 else message.next_version
        if not target:
            return None
        try:
            await self._gql(SELECT_BRANCH, {"id": target})
            await self._reload_messages()
        except ApiError as exc:
            self.error = exc.message
        return self._expired_redirect()

    def _reset_conversation(self) -> None:
        self.conversation_id = self.title = ""
        self.messages = []

    # Rename and delete

    @rx.event
    def start_rename(self, conversation_id: str, title: str) -> None:
        self.rename_id, self.rename_title = conversation_id, title

    @rx.event
    def set_rename_title(self, value: str) -> None:
        self.rename_title = value

    @rx.event
    def cancel_rename(self) -> None:
        self.rename_id = ""

    @rx.event
    async def save_rename(self) -> EventSpec | None:
        title = self.rename_title.strip()
        if not title:
            return None
        try:
            await self._gql(RENAME, {"id": self.rename_id, "title": title})
            if self.rename_id == self.conversation_id:
                self.title = title
            self.rename_id = ""
            await self._load_list()
        except ApiError as exc:
            self.error = exc.message
        return self._expired_redirect()

    @rx.event
    def ask_delete(self, conversation_id: str) -> None:
        self.delete_id = conversation_id

    @rx.event
    def cancel_delete(self) -> None:
        self.delete_id = ""

    @rx.event
    async def confirm_delete(self) -> EventSpec | None:
        deleted, self.delete_id = self.delete_id, ""
        try:
            await self._gql(DELETE, {"id": deleted})
            await self._load_list()
        except ApiError as exc:
            self.error = exc.message
            return self._expired_redirect()
        if deleted == self.conversation_id:
            self._reset_conversation()
            return rx.redirect("/")
        return None

    # Composer

    @rx.var
    def search_labels(self) -> list[str]:
        """Off / Web / Documents, each saying so when this server cannot search that way."""
        return [
            f"{label} ({UNAVAILABLE_NOTES[mode]})" if mode in self.unavailable_modes else label
            for label, mode in SEARCH_LABELS.items()
        ]

    @rx.var
    def search_label(self) -> str:
        return self.search_labels[list(SEARCH_LABELS.values()).index(self.search_mode)]

    @rx.event
    def set_search_label(self, label: str) -> None:
        self.search_mode = SEARCH_LABELS.get(label.split(" (")[0], "OFF")

    @rx.var
    def model_card(self) -> str:
        return next((c.card for c in self.model_choices if c.id == self.model), "")

    async def _load_models(self) -> None:
        choices = (await self._gql(MODELS))["models"]
        self.model_choices = [_choice(model) for model in choices]
        self._default_model = next((m["id"] for m in choices if m["isDefault"]), "")
        self.model = self._default_model

    @rx.event
    async def pick_model(self, picked: str) -> EventSpec | None:
        """Answer with the served model `picked`; an open conversation keeps it from now on."""
        if self.streaming or picked not in (c.id for c in self.model_choices):
            return None
        self.model = picked
        if self.conversation_id:
            try:
                await self._gql(SET_MODEL, {"id": self.conversation_id, "m": picked})
            except ApiError as exc:
                self.error = exc.message
        return self._expired_redirect()

    async def _load_search_modes(self) -> None:
        modes = (await self._gql(SEARCH_MODES))["searchModes"]
        self.unavailable_modes = [m["mode"] for m in modes if not m["available"]]
        names = sorted({c["name"] for c in (await self._gql(COLLECTION_NAMES))["collections"]})
        self.collection_choices = [ALL_COLLECTIONS, *names]
        if self.search_collection not in self.collection_choices:
            self.search_collection = ALL_COLLECTIONS

    @rx.event
    def set_search_collection(self, name: str) -> None:
        self.search_collection = name

    @rx.event
    def start_edit(self, message_id: str, text: str) -> None:
        self.edit_id, self.edit_text = message_id, text

    @rx.event
    def set_edit_text(self, value: str) -> None:
        self.edit_text = value

    @rx.event
    def cancel_edit(self) -> None:
        self.edit_id = ""

    def _start(self, content: str, regenerate: bool, edit_of: str = "") -> EventSpec | None:
        """Start streaming an answer unless one is already streaming in this tab."""
        if self.streaming:
            return None
        self.streaming = True
        return ChatState.stream(content, regenerate, edit_of)

    @rx.event
    def send(self, form: dict[str, str]) -> EventSpec | None:
        content = form.get("content", "").strip()
        return self._start(content, False) if content else None

    @rx.event
    def resend_edit(self) -> EventSpec | None:
        content, edited, self.edit_id = self.edit_text.strip(), self.edit_id, ""
        return self._start(content, False, edited) if content else None

    @rx.event
    def regenerate(self) -> EventSpec | None:
        return self._start("", True) if self.can_regenerate else None

    @rx.event
    def retry(self) -> EventSpec | None:
        """Try the failed turn again: answer the stored question anew, or resend one never stored."""
        if self.streaming or not self.failed_turn or not self.messages:
            return None
        if self.messages[-1].id:
            return self._start("", True)
        self.messages.pop()
        return self._start(self.retry_content, False)

    @rx.event
    async def stop(self) -> None:
        if not self.streaming:
            return
        self.stop_requested = True
        if self.live_id:
            with suppress(ApiError):  # the stream loop also unsubscribes, which stops the answer
                await self._gql(STOP, {"id": self.live_id})

    # Streaming

    def _begin(self, content: str, regenerate: bool, edit_of: str = "") -> dict[str, Any]:
        """Show the question and an empty live answer; the subscription's input."""
        self.streaming, self.stop_requested = True, False
        self.error = self.live_text = self.live_note = self.live_id = ""
        self.failed_turn = False
        self.live_sources = []
        if content:
            self.retry_content = content
        if regenerate:
            while self.messages and self.messages[-1].role == "assistant":
                self.messages.pop()
        elif edit_of:  # the edit becomes a new version: the branch below the original goes out of view
            index = next((i for i, m in enumerate(self.messages) if m.id == edit_of), len(self.messages))
            self.messages = [*self.messages[:index], ChatMessage(role="user", content=content)]
        else:
            self.messages.append(ChatMessage(role="user", content=content))
        chat_input: dict[str, Any] = {
            "content": content,
            "regenerate": regenerate,
            "search": self.search_mode,
        }
        if self.search_mode == "DOCUMENTS" and self.search_collection != ALL_COLLECTIONS:
            chat_input["collections"] = [self.search_collection]
        if self.conversation_id:
            chat_input["conversationId"] = self.conversation_id
        if edit_of:
            chat_input["editOf"] = edit_of
        if self.model:
            chat_input["model"] = self.model
        self._new_chat = not regenerate and not edit_of and len(self.messages) == 1
        return chat_input

    def _apply(self, event: dict[str, Any]) -> EventSpec | None:
        """Apply one chat event (not tokens: those are batched)."""
        kind = event["__typename"]
        if kind == "ChatStarted":
            self.live_id = event["assistantMessageId"]
            if self.messages and self.messages[-1].role == "user":
                self.messages[-1].id = event["userMessageId"]
            if self.conversation_id != event["conversationId"]:  # a new chat: give it its URL
                self.conversation_id, self._url_only = event["conversationId"], True
                return rx.redirect(f"/c/{self.conversation_id}", replace=True)
        elif kind == "ChatSources":
            self.live_sources = _sources(event["results"])
            if not event["available"]:
                self.live_note = event.get("error") or "Search is unavailable."
        elif kind == "ChatDone":
            if event["finishReason"] == "length":
                self.live_note = LENGTH_NOTE
            self._finish("stopped" if self.stop_requested else "complete", _speed(event["tokensPerSecond"]))
        elif kind == "ChatError":
            self.error = self.live_note = ERROR_HINTS.get(event["code"], event["message"])
            self._finish("error", "")
        return None

    def _finish(self, status: str, speed: str) -> None:
        """Move the live answer into the message list."""
        if not self.streaming:
            return
        note = "Stopped." if status == "stopped" else self.live_note
        if self.live_id:  # nothing was stored when the turn failed before it started
            self.messages.append(
                ChatMessage(
                    self.live_id, "assistant", self.live_text, status, list(self.live_sources), note, speed
                )
            )
        self.streaming, self.failed_turn = False, status == "error"
        self.live_text = self.live_note = ""
        self.live_sources = []

    @rx.event(background=True)
    async def stream(self, content: str, regenerate: bool, edit_of: str = ""):
        """Subscribe to `chat` and show tokens as they arrive."""
        async with self:
            chat_input = self._begin(content, regenerate, edit_of)
            token = await self._live_token()
        pending, flushed_at = "", time.monotonic()
        try:
            async with aclosing(subscribe(CHAT, {"input": chat_input}, token)) as events:
                async for data in events:
                    event = data["chat"]
                    if event["__typename"] == "ChatToken":
                        pending += event["text"]
                        if time.monotonic() - flushed_at < FLUSH_SECONDS:
                            continue
                    async with self:
                        self.live_text += pending
                        pending, flushed_at = "", time.monotonic()
                        if self.stop_requested:
                            break
                        effect = None if event["__typename"] == "ChatToken" else self._apply(event)
                    if effect is not None:
                        yield effect
        except ApiError as exc:
            async with self:
                if exc.unauthenticated:
                    self._sign_out(SESSION_EXPIRED)
                self.error = ERROR_HINTS.get(exc.code, exc.message)
        async with self:
            self.live_text += pending
            self._finish("error" if self.error else "stopped" if self.stop_requested else "complete", "")
            signed_in = self.logged_in
            answered = self.conversation_id if signed_in and not self.error else ""
            name_it = answered if self._new_chat else ""
            with suppress(ApiError):  # else the sidebar refreshes on the next page load
                if answered:  # a failed turn stays as shown, to retry
                    await self._reload_messages()
                if signed_in:
                    await self._load_list()
                    self.title = self.title or next(
                        (c.title for c in self.conversations if c.id == self.conversation_id), ""
                    )
        if not signed_in:
            yield rx.redirect("/login")
        if name_it:  # after the sidebar shows the new chat: the model's title replaces its first words
            # The title is a model call: made without the state's lock, so a click meanwhile (Regenerate,
            # a new message) is handled at once instead of waiting for the model.
            async with self:
                token, forwarded = await self._live_token(), self._forwarded()
            with suppress(ApiError):
                named = (await execute(GENERATE_TITLE, {"id": name_it}, token, forwarded))["generateTitle"]
                async with self:
                    if self.conversation_id == name_it:
                        self.title = named["title"]
                    await self._load_list()
