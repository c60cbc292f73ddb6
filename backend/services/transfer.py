"""Export a conversation (JSON: the whole tree; Markdown: the active branch) and import a JSON export.

An import is validated as a whole before anything is stored: size (the request limit of either
transport), format, roles, statuses, the message cap, and parents that point to earlier messages of
the same file; then it counts against the user's imports per hour and conversation cap. Ids in the file only link its messages to
each other; every stored document gets a fresh id and belongs to the importing user, so a file cannot
reach anybody else's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from beanie import PydanticObjectId
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from backend.core.config import Settings
from backend.core.errors import ValidationError
from backend.models import Conversation, Message, MessageRole, MessageStatus, User
from backend.models.common import oid, utcnow
from backend.services import caps, conversations
from backend.services.validation import MAX_TITLE_CHARS
from common.settings import MAX_CONVERSATION_MESSAGES

FORMAT = "chakor.conversation"
VERSION = 1
MAX_IMPORT_MESSAGES = MAX_CONVERSATION_MESSAGES  # what a conversation's tree is read up to
MAX_CONTENT_CHARS = 200_000  # answers may be longer than a user message (CHAKOR_MAX_MESSAGE_CHARS)
MAX_ID_CHARS = 64
# Messages stored per insert: one insert of thousands holds the single-threaded sidecar (and so
# every other request) for seconds; batches let other requests in between.
INSERT_BATCH = 250


class ExportFormat(StrEnum):
    """What `exportConversation` writes."""

    JSON = "json"
    MARKDOWN = "markdown"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ExportedMessage(_Strict):
    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    parent_id: str | None = Field(default=None, alias="parentId", max_length=MAX_ID_CHARS)
    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_CONTENT_CHARS)
    status: Literal["complete", "stopped", "error", "interrupted"] = "complete"
    created_at: AwareDatetime | None = Field(default=None, alias="createdAt")


class ExportedSettings(_Strict):
    system_prompt: str | None = Field(
        default=None, alias="systemPrompt", max_length=conversations.MAX_SYSTEM_PROMPT_CHARS
    )
    temperature: float | None = Field(default=None, ge=0, le=conversations.MAX_TEMPERATURE)
    max_tokens: int | None = Field(default=None, alias="maxTokens", ge=1, le=conversations.MAX_ANSWER_TOKENS)


class ExportedConversation(_Strict):
    format: Literal["chakor.conversation"]
    version: Literal[1]
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    settings: ExportedSettings = Field(default_factory=ExportedSettings)
    active_leaf_id: str | None = Field(default=None, alias="activeLeafId", max_length=MAX_ID_CHARS)
    messages: list[ExportedMessage] = Field(max_length=MAX_IMPORT_MESSAGES)


def _status(message: Message) -> str:
    return "stopped" if message.status == MessageStatus.STREAMING else message.status.value


async def export_json(conversation: Conversation) -> str:
    """Every message of the conversation, parents before children, with its settings."""
    found = await conversations.tree(conversation)
    active = found.branch(conversation.active_leaf_id)
    messages = [
        {
            "id": str(m.id),
            "parentId": str(m.parent_id) if m.parent_id in found.by_id else None,
            "role": m.role.value,
            "content": m.content,
            "status": _status(m),
            "createdAt": m.created_at.isoformat(),
        }
        for m in found.nodes
        if m.role != MessageRole.SYSTEM
    ]
    document = {
        "format": FORMAT,
        "version": VERSION,
        "title": conversation.title,
        "settings": {
            "systemPrompt": conversation.system_prompt,
            "temperature": conversation.temperature,
            "maxTokens": conversation.max_tokens,
        },
        "activeLeafId": str(active[-1].id) if active else None,
        "messages": messages,
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


async def export_markdown(conversation: Conversation) -> str:
    """The active branch as Markdown: a heading per turn."""
    lines = [f"# {conversation.title}", ""]
    if conversation.system_prompt:
        lines += [f"> System prompt: {conversation.system_prompt}", ""]
    for message in await conversations.active_branch(conversation):
        who = "User" if message.role == MessageRole.USER else "Assistant"
        lines += [f"## {who}", "", message.content, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _parse(data: str, settings: Settings) -> ExportedConversation:
    limit = settings.max_request_bytes
    if len(data) > limit or len(data.encode("utf-8", "surrogatepass")) > limit:
        raise ValidationError(f"import is larger than {limit} bytes")
    try:
        return ExportedConversation.model_validate_json(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise ValidationError(f"invalid conversation export at {where}: {first['msg']}") from None


def _check_links(document: ExportedConversation) -> None:
    """Unique ids; each parent an earlier message; user and assistant turns alternate; NULs refused."""
    seen: dict[str, str] = {}
    for index, message in enumerate(document.messages):
        if message.id in seen:
            raise ValidationError(f"messages[{index}]: duplicate id {message.id!r}")
        if "\x00" in message.content:
            raise ValidationError(f"messages[{index}]: content must not contain NUL characters")
        parent_role = None
        if message.parent_id is not None:
            if message.parent_id not in seen:
                raise ValidationError(
                    f"messages[{index}]: parentId {message.parent_id!r} is not an earlier message of this file"
                )
            parent_role = seen[message.parent_id]
        expected = "assistant" if parent_role == "user" else "user"
        if message.role != expected:
            raise ValidationError(
                f"messages[{index}]: a {message.role} message cannot follow a {parent_role or 'start'}"
            )
        seen[message.id] = message.role
    if document.active_leaf_id is not None and document.active_leaf_id not in seen:
        raise ValidationError("activeLeafId is not a message of this file")


async def import_json(user: User, data: str, settings: Settings) -> Conversation:
    """A new conversation of `user` holding the file's tree (validated first; nothing stored on error)."""
    document = _parse(data, settings)
    caps.check_import_size(len(document.messages), settings)
    _check_links(document)
    title = document.title.strip()
    if not title or "\x00" in title:
        raise ValidationError("title must not be empty or contain NUL characters")
    conversation = Conversation(
        user_id=oid(user),
        title=title,
        system_prompt=document.settings.system_prompt,
        temperature=document.settings.temperature,
        max_tokens=document.settings.max_tokens,
    )
    ids: dict[str, PydanticObjectId] = {m.id: PydanticObjectId() for m in document.messages}
    now = utcnow()
    undated = len(document.messages)  # messages without a date keep the file's order, ending now
    stored = [
        Message(
            id=ids[m.id],
            conversation_id=PydanticObjectId(),  # replaced below, once the conversation has its id
            user_id=oid(user),
            parent_id=ids[m.parent_id] if m.parent_id else None,
            role=MessageRole(m.role),
            content=m.content,
            status=MessageStatus(m.status),
            created_at=min(m.created_at, now) if m.created_at else now - timedelta(milliseconds=undated - i),
        )
        for i, m in enumerate(document.messages)
    ]
    leaf = ids[document.active_leaf_id] if document.active_leaf_id else (stored[-1].id if stored else None)
    conversation.active_leaf_id = leaf
    await caps.take_import(oid(user), settings)
    try:
        await conversation.insert()
        await caps.claim_conversation(conversation, settings)
        for message in stored:
            message.conversation_id = oid(conversation)
        for start in range(0, len(stored), INSERT_BATCH):
            await Message.insert_many(stored[start : start + INSERT_BATCH])
    except BaseException:  # a half-stored import is no import: take it back, uncounted
        await asyncio.shield(_take_back(oid(user), conversation))
        raise
    return conversation


async def _take_back(user_id: PydanticObjectId, conversation: Conversation) -> None:
    with contextlib.suppress(Exception):  # the database may be what failed; the first error stands
        await caps.give_back_import(user_id)
        if conversation.id is not None:
            await _remove(conversation)


async def _remove(conversation: Conversation) -> None:
    await Message.get_pymongo_collection().delete_many({"conversation_id": conversation.id})
    await Conversation.get_pymongo_collection().delete_one({"_id": conversation.id})
