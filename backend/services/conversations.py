"""A user's conversations and messages; another user's ids read as not found."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from beanie import PydanticObjectId

from backend.core.config import Settings
from backend.core.errors import NotFoundError, ValidationError
from backend.models import Conversation, Message, User
from backend.models.common import Owner, oid, utcnow
from backend.services import caps
from backend.services.pagination import after_filter, newest_first
from backend.services.tree import MessageTree
from backend.services.validation import MAX_TITLE_CHARS, clean_text, object_id, page_size, search_regex
from common.settings import MAX_CONVERSATION_MESSAGES

DEFAULT_TITLE = "New conversation"
TITLE_FROM_MESSAGE_CHARS = 60
MAX_MESSAGES = 1000
MAX_NODES = (
    MAX_CONVERSATION_MESSAGES  # every version of every message of one conversation (branches included)
)
MAX_SYSTEM_PROMPT_CHARS = 8000
# Messages parsed between two yields to the event loop while a tree loads: parsing one takes about
# 0.1 ms, so a 5000-node tree holds other requests (/healthz) for about 10 ms at a time, not 0.5 s.
YIELD_EVERY = 100
MAX_TEMPERATURE = 2.0
MAX_ANSWER_TOKENS = 32768  # an upper bound; the chat also caps it at half the model's context


@dataclass
class ConversationChanges:
    """Fields to change; `None` in a settings field means "use the server's default" (UNSET = keep)."""

    title: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    set_system_prompt: bool = False
    set_temperature: bool = False
    set_max_tokens: bool = False
    model: str | None = None  # a served model's name, checked by the caller; None with set_model: the default
    set_model: bool = False


async def find_conversation(owner: Owner, conversation_id: str) -> Conversation | None:
    """The conversation if it exists and belongs to `owner`, else None."""
    oid = object_id(conversation_id)
    if oid is None:
        return None
    return await Conversation.find_one({"_id": oid, "user_id": owner.id})


async def get_conversation(owner: Owner, conversation_id: str) -> Conversation:
    """Like `find_conversation`, but NotFoundError instead of None."""
    conversation = await find_conversation(owner, conversation_id)
    if conversation is None:
        raise NotFoundError("conversation not found")
    return conversation


def title_from_message(content: str) -> str:
    """A short title: the message's first words, whitespace collapsed."""
    words = " ".join(content.split())
    if len(words) <= TITLE_FROM_MESSAGE_CHARS:
        return words or DEFAULT_TITLE
    return words[: TITLE_FROM_MESSAGE_CHARS - 1].rstrip() + "…"


def _apply(conversation: Conversation, changes: ConversationChanges) -> None:
    """Validate `changes` and set them on `conversation` (nothing is set when one is bad)."""
    title = None if changes.title is None else clean_text(changes.title, "title", MAX_TITLE_CHARS)
    prompt = changes.system_prompt
    if prompt is not None:
        prompt = clean_text(prompt, "systemPrompt", MAX_SYSTEM_PROMPT_CHARS, allow_empty=True)
    if changes.temperature is not None and not 0 <= changes.temperature <= MAX_TEMPERATURE:
        raise ValidationError(f"temperature must be between 0 and {MAX_TEMPERATURE}")
    if changes.max_tokens is not None and not 1 <= changes.max_tokens <= MAX_ANSWER_TOKENS:
        raise ValidationError(f"maxTokens must be between 1 and {MAX_ANSWER_TOKENS}")
    if title is not None:
        conversation.title, conversation.title_generated = title, False
    if changes.set_system_prompt:
        conversation.system_prompt = prompt
    if changes.set_temperature:
        conversation.temperature = changes.temperature
    if changes.set_max_tokens:
        conversation.max_tokens = changes.max_tokens
    if changes.set_model:
        conversation.model = changes.model


async def _set_fields(conversation: Conversation, *names: str) -> None:
    """Write these fields alone: a save of the whole document could undo a turn's concurrent
    `touch` (its active leaf)."""
    fields = {name: getattr(conversation, name) for name in names}
    await Conversation.get_pymongo_collection().update_one({"_id": conversation.id}, {"$set": fields})


async def create_conversation(
    user: User, title: str | None, settings: Settings, changes: ConversationChanges | None = None
) -> Conversation:
    """A new empty conversation with optional settings, within the user's conversation cap."""
    clean = clean_text(title, "title", MAX_TITLE_CHARS, allow_empty=True) if title is not None else ""
    conversation = Conversation(user_id=oid(user), title=clean or DEFAULT_TITLE)
    _apply(conversation, changes or ConversationChanges())
    await conversation.insert()
    await caps.claim_conversation(conversation, settings)
    return conversation


async def update_conversation(user: User, conversation_id: str, changes: ConversationChanges) -> Conversation:
    """Change a conversation's title and settings."""
    conversation = await get_conversation(user, conversation_id)
    _apply(conversation, changes)
    await _set_fields(
        conversation, "title", "title_generated", "system_prompt", "temperature", "max_tokens", "model"
    )
    return conversation


async def rename_conversation(user: User, conversation_id: str, title: str) -> Conversation:
    """Set a conversation's title."""
    clean = clean_text(title, "title", MAX_TITLE_CHARS)
    conversation = await get_conversation(user, conversation_id)
    conversation.title, conversation.title_generated = clean, False
    await _set_fields(conversation, "title", "title_generated")
    return conversation


async def delete_conversation(user: User, conversation_id: str) -> bool:
    """Delete a conversation and its messages."""
    conversation = await get_conversation(user, conversation_id)
    await Message.find(Message.conversation_id == conversation.id).delete()
    await conversation.delete()
    return True


async def touch(
    conversation: Conversation, leaf_id: PydanticObjectId | None = None, model: str | None = None
) -> None:
    """Move a conversation to the top of its owner's list (and make `leaf_id` its active leaf, `model`
    the model that answers it)."""
    conversation.updated_at = utcnow()
    changes: dict[str, Any] = {"updated_at": conversation.updated_at}
    if model is not None:
        conversation.model = changes["model"] = model
    if leaf_id is not None:
        conversation.active_leaf_id = changes["active_leaf_id"] = leaf_id
    await Conversation.get_pymongo_collection().update_one({"_id": conversation.id}, {"$set": changes})


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
    return await newest_first(Conversation.find(query), "updated_at", limit)


async def tree(conversation: Conversation) -> MessageTree:
    """Every message of a conversation (up to MAX_NODES, the newest) as a tree."""
    return (await trees([oid(conversation)]))[0]


async def trees(conversation_ids: Sequence[PydanticObjectId]) -> list[MessageTree]:
    """The trees of several conversations (each up to MAX_NODES, the newest) from one query, in order."""
    wanted = list(dict.fromkeys(conversation_ids))
    query = Message.find({"conversation_id": {"$in": wanted}}).sort("-created_at", "-_id")
    if len(wanted) == 1:
        query = query.limit(MAX_NODES)  # for several, a total limit could starve one: capped per tree below
    newest: dict[PydanticObjectId, list[Message]] = {cid: [] for cid in wanted}
    read = 0
    async for message in query:
        kept = newest[message.conversation_id]
        if len(kept) < MAX_NODES:
            kept.append(message)
        read += 1
        if read % YIELD_EVERY == 0:  # a batch parses without awaiting: let other requests run between
            await asyncio.sleep(0)
    return [MessageTree(newest[cid]) for cid in conversation_ids]


async def active_branch(conversation: Conversation) -> list[Message]:
    """The messages of the active branch, root first."""
    return (await tree(conversation)).branch(conversation.active_leaf_id)


async def set_active_leaf(conversation: Conversation, leaf_id: PydanticObjectId) -> None:
    """Make the branch ending at `leaf_id` the active one."""
    conversation.active_leaf_id = leaf_id
    await Conversation.get_pymongo_collection().update_one(
        {"_id": conversation.id}, {"$set": {"active_leaf_id": leaf_id}}
    )


async def select_branch(user: User, message_id: str) -> Conversation:
    """Activate the branch through one of the user's messages (down to its newest leaf)."""
    target = object_id(message_id)
    message = await Message.find_one({"_id": target, "user_id": user.id}) if target else None
    if message is None:
        raise NotFoundError("message not found")
    conversation = await get_conversation(user, str(message.conversation_id))
    found = await tree(conversation)
    await set_active_leaf(conversation, found.leaf_under(oid(message)))
    return conversation


async def link_legacy_conversations() -> int:
    """Migration: give messages stored before branches existed a parent (the previous message).

    Conversations without the `tree` field are linked in creation order and their newest message
    becomes the active leaf; returns how many were migrated. Runs at start-up; a second run finds none.
    """
    collection = Conversation.get_pymongo_collection()
    messages = Message.get_pymongo_collection()
    migrated = 0
    async for doc in collection.find({"tree": {"$exists": False}}, {"_id": 1}):
        previous = None
        async for message in messages.find({"conversation_id": doc["_id"]}, {"_id": 1}).sort(
            [("created_at", 1), ("_id", 1)]
        ):
            await messages.update_one({"_id": message["_id"]}, {"$set": {"parent_id": previous}})
            previous = message["_id"]
        await collection.update_one({"_id": doc["_id"]}, {"$set": {"tree": True, "active_leaf_id": previous}})
        migrated += 1
    return migrated
