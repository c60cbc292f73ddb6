"""Per-user caps on what one account may store or spend, each a setting named in its refusal.

Conversations per user (CHAKOR_MAX_CONVERSATIONS_PER_USER), messages per conversation
(CHAKOR_MAX_MESSAGES_PER_CONVERSATION), imports per hour (CHAKOR_IMPORTS_PER_HOUR) and web
searches per UTC day (CHAKOR_WEB_SEARCHES_PER_DAY, counted on the user's usage row). Counted caps are
taken with one `$inc` before the work and given back when the cap is passed, so parallel requests
cannot overshoot them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from backend.core.config import Settings
from backend.core.errors import UserError
from backend.models import Conversation, UsageDay, WindowCounter
from backend.services.usage import today


class LimitReached(UserError):
    """A per-user cap is reached; the message says which setting holds it and when it frees up."""

    code = "LIMIT_REACHED"


async def _take(
    collection: AsyncCollection[Any], key: dict[str, Any], field: str, limit: int, **insert: Any
) -> bool:
    """Count one use on the document `key` (made on first use with `insert`); False, and the use
    given back, when that passes `limit`."""
    counted = await collection.find_one_and_update(
        key,
        {"$inc": {field: 1}, **({"$setOnInsert": insert} if insert else {})},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    if counted is not None and counted[field] <= limit:
        return True
    await collection.update_one(key, {"$inc": {field: -1}})
    return False


async def take_import(user_id: PydanticObjectId, settings: Settings) -> None:
    """Count one import in the current UTC hour; LimitReached past CHAKOR_IMPORTS_PER_HOUR."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    key = {"_id": f"import:{user_id}:{hour:%Y-%m-%dT%H}"}
    collection = WindowCounter.get_pymongo_collection()
    expires = hour + timedelta(hours=2)  # kept a little past its hour; the TTL index removes it
    if not await _take(
        collection, key, "used", settings.imports_per_hour, user_id=user_id, expires_at=expires
    ):
        raise LimitReached(
            f"at most {settings.imports_per_hour} imports per hour (CHAKOR_IMPORTS_PER_HOUR); try again later"
        )


async def give_back_import(user_id: PydanticObjectId) -> None:
    """Uncount an import that was not stored after all."""
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
    await WindowCounter.get_pymongo_collection().update_one(
        {"_id": f"import:{user_id}:{hour}", "used": {"$gt": 0}}, {"$inc": {"used": -1}}
    )


async def take_web_search(user_id: PydanticObjectId, settings: Settings) -> None:
    """Count one web search on today's usage row; LimitReached past CHAKOR_WEB_SEARCHES_PER_DAY."""
    key = {"user_id": user_id, "day": today()}
    collection = UsageDay.get_pymongo_collection()
    if not await _take(collection, key, "web_searches", settings.web_searches_per_day):
        raise LimitReached(
            f"at most {settings.web_searches_per_day} web searches per day (CHAKOR_WEB_SEARCHES_PER_DAY); "
            "it resets at 00:00 UTC"
        )


def _too_many_conversations(settings: Settings) -> LimitReached:
    return LimitReached(
        f"at most {settings.max_conversations_per_user} conversations per user "
        "(CHAKOR_MAX_CONVERSATIONS_PER_USER); delete some first"
    )


async def check_conversation_room(user_id: PydanticObjectId, settings: Settings) -> None:
    """LimitReached when the user holds CHAKOR_MAX_CONVERSATIONS_PER_USER conversations already (a
    check before a chat turn starts one; the turn's own slots bound how many can race past it)."""
    if await Conversation.find({"user_id": user_id}).count() >= settings.max_conversations_per_user:
        raise _too_many_conversations(settings)


async def claim_conversation(conversation: Conversation, settings: Settings) -> None:
    """Keep a conversation just inserted only while its owner is within the cap: insert, then count,
    so parallel creations cannot all pass (past the cap, the new one is deleted and refused)."""
    if (
        await Conversation.find({"user_id": conversation.user_id}).count()
        > settings.max_conversations_per_user
    ):
        await Conversation.get_pymongo_collection().delete_one({"_id": conversation.id})
        raise _too_many_conversations(settings)


def check_message_room(held: int, adding: int, settings: Settings) -> None:
    """LimitReached when a conversation holding `held` messages cannot take `adding` more."""
    if held + adding > settings.max_messages_per_conversation:
        raise LimitReached(
            f"this conversation holds {held} messages, at most {settings.max_messages_per_conversation} "
            "(CHAKOR_MAX_MESSAGES_PER_CONVERSATION); start a new conversation"
        )


def check_import_size(messages: int, settings: Settings) -> None:
    """LimitReached when an import holds more messages than a conversation may."""
    if messages > settings.max_messages_per_conversation:
        raise LimitReached(
            f"the import holds {messages} messages, a conversation at most "
            f"{settings.max_messages_per_conversation} (CHAKOR_MAX_MESSAGES_PER_CONVERSATION)"
        )
