"""Conversations and their messages (messages live in their own collection)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import BaseModel, Field

from backend.models.common import utcnow


class Conversation(Document):
    """A user's conversation; `updated_at` moves with every new message.

    Its messages form a tree (`Message.parent_id`); `active_leaf_id` ends the branch shown and
    prompted with. `tree` is False only for conversations stored before messages had parents,
    until the start-up migration links them. Settings left None use the server's defaults.
    """

    user_id: PydanticObjectId
    title: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    active_leaf_id: PydanticObjectId | None = None
    tree: bool = True
    title_generated: bool = False
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    # The served model that answers it (`chakor models`): set at the first turn, changed by a turn or
    # updateConversation naming another; None (stored before models had names): the default one.
    model: str | None = None

    class Settings:
        name = "conversations"
        indexes = [
            pymongo.IndexModel([("user_id", pymongo.ASCENDING), ("updated_at", pymongo.DESCENDING)]),
        ]


class MessageRole(StrEnum):
    """Who wrote a message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(StrEnum):
    """An assistant message streams, then completes, stops or fails; user messages are complete."""

    STREAMING = "streaming"
    COMPLETE = "complete"
    STOPPED = "stopped"
    ERROR = "error"
    INTERRUPTED = "interrupted"  # its backend died mid-answer; the text up to the last flush is kept


class Source(BaseModel):
    """One web search result or document passage cited in an answer (`collection`: the document
    collection it came from; None for the web)."""

    title: str
    url: str
    content: str
    score: float | None = None
    collection: str | None = None


class Message(Document):
    """One message of a conversation: a node of its tree (`parent_id` None for a first turn)."""

    conversation_id: PydanticObjectId
    user_id: PydanticObjectId
    parent_id: PydanticObjectId | None = None
    role: MessageRole
    content: str
    status: MessageStatus = MessageStatus.COMPLETE
    created_at: datetime = Field(default_factory=utcnow)
    sources: list[Source] | None = None
    sources_error: str | None = None
    # The system turn as the model saw it when search results were in the prompt (they are cited from it).
    context: str | None = None
    tokens_predicted: int | None = None
    tokens_per_second: float | None = None
    finish_reason: str | None = None
    error: str | None = None
    model: str | None = None  # the served model that wrote an answer

    class Settings:
        name = "messages"
        indexes = [
            pymongo.IndexModel([("conversation_id", pymongo.ASCENDING), ("created_at", pymongo.ASCENDING)]),
            pymongo.IndexModel([("user_id", pymongo.ASCENDING)]),
        ]
