"""A user's conversations and messages; another user's ids read as not found."""

from __future__ import annotations

from typing import Any

from backend.core.errors import NotFoundError
from backend.models import Conversation, Message, User
from backend.models.common import oid, utcnow
from backend.services.pagination import after_filter, encode_cursor
from backend.services.validation import MAX_TITLE_CHARS, clean_text, object_id, page_size, search_regex

DEFAULT_TITLE = "New conversation"
TITLE_FROM_MESSAGE_CHARS = 60
MAX_MESSAGES = 1000


async def find_conversation(user: User, conversation_id: str) -> Conversation | None:
    """The conversation if it exists and belongs to `user`, else None."""
    oid = object_id(conversation_id)
    if oid is None:
        return None
    return await Conversation.find_one({"_id": oid, "user_id": user.id})


async def get_conversation(user: User, conversation_id: str) -> Conversation:
    """Like `find_conversation`, but NotFoundError instead of None."""
    conversation = await find_conversation(user, conversation_id)
    if conversation is None:
        raise NotFoundError("conversation not found")
    return conversation


def title_from_message(content: str) -> str:
    """A short title: the message's first words, whitespace collapsed."""
    words = " ".join(content.split())
    if len(words) <= TITLE_FROM_MESSAGE_CHARS:
        return words or DEFAULT_TITLE
    return words[: TITLE_FROM_MESSAGE_CHARS - 1].rstrip() + "…"


async def create_conversation(user: User, title: str | None) -> Conversation:
    """A new empty conversation."""
    clean = clean_text(title, "title", MAX_TITLE_CHARS, allow_empty=True) if title is not None else ""
    conversation = Conversation(user_id=user.id, title=clean or DEFAULT_TITLE)
    await conversation.insert()
    return conversation


async def rename_conversation(user: User, conversation_id: str, title: str) -> Conversation:
    """Set a conversation's title."""
    clean = clean_text(title, "title", MAX_TITLE_CHARS)
    conversation = await get_conversation(user, conversation_id)
    conversation.title = clean
    await conversation.save()
    return conversation


async def delete_conversation(user: User, conversation_id: str) -> bool:
    """Delete a conversation and its messages."""
    conversation = await get_conversation(user, conversation_id)
    await Message.find(Message.conversation_id == conversation.id).delete()
    await conversation.delete()
    return True


async def touch(conversation: Conversation) -> None:
    """Move a conversation to the top of its owner's list."""
    conversation.updated_at = utcnow()
    await Conversation.get_pymongo_collection().update_one(
        {"_id": conversation.id}, {"$set": {"updated_at": conversation.updated_at}}
    )


async def list_conversations(
    user: User, first: int, after: str | None, search: str | None
) -> tuple[list[Conversation], bool, str | None]:
    """A page of the user's conversations, most recently active first.

    `search` matches titles and message text literally (escaped regex, case-insensitive).
    """
    limit = page_size(first)
    query: dict[str, Any] = {"user_id": user.id, **after_filter("updated_at", after)}
    if search:
        pattern = {"$regex": search_regex(search), "$options": "i"}
        hits = await Message.get_pymongo_collection().distinct(
            "conversation_id", {"user_id": user.id, "content": pattern}
        )
        query = {"$and": [query, {"$or": [{"title": pattern}, {"_id": {"$in": hits}}]}]}
    found = await Conversation.find(query).sort("-updated_at", "-_id").limit(limit + 1).to_list()
    has_next = len(found) > limit
    found = found[:limit]
    cursor = encode_cursor(found[-1].updated_at, oid(found[-1])) if found else None
    return found, has_next, cursor


async def messages(conversation: Conversation, last: int = MAX_MESSAGES) -> list[Message]:
    """The newest `last` messages of a conversation, oldest first."""
    newest = (
        await Message.find(Message.conversation_id == conversation.id)
        .sort("-created_at", "-_id")
        .limit(last)
        .to_list()
    )
    return newest[::-1]
