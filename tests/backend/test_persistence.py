"""The collections and indexes the backend creates (messages apart from conversations, TTL caches)."""

from __future__ import annotations

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.graphql import Api


async def indexes(db: AsyncDatabase, collection: str) -> dict[tuple, dict]:
    return {
        tuple(tuple(k) for k in info["key"]): info
        for info in (await db[collection].index_information()).values()
    }


async def test_indexes(api: Api, db: AsyncDatabase) -> None:
    users = await indexes(db, "users")
    assert users[(("email", 1),)]["unique"] is True
    tokens = await indexes(db, "refresh_tokens")
    assert tokens[(("token_hash", 1),)]["unique"] is True
    assert tokens[(("expires_at", 1),)]["expireAfterSeconds"] == 0
    assert (("family_id", 1),) in tokens
    messages = await indexes(db, "messages")
    assert (("conversation_id", 1), ("created_at", 1)) in messages
    assert (("user_id", 1),) in messages
    conversations = await indexes(db, "conversations")
    assert (("user_id", 1), ("updated_at", -1)) in conversations
    cache = await indexes(db, "search_cache")
    assert cache[(("key", 1),)]["unique"] is True
    assert cache[(("expires_at", 1),)]["expireAfterSeconds"] == 0


async def test_messages_are_not_embedded_in_conversations(api: Api, db: AsyncDatabase) -> None:
    user = await api.register()
    events = await api.chat(user, content="where do you live?", maxTokens=2)
    conversation = await db.conversations.find_one({"_id": ObjectId(events[0]["conversationId"])})
    assert conversation["title"] == "where do you live?"
    assert set(conversation) == {
        "_id",
        "user_id",
        "title",
        "created_at",
        "updated_at",
        "active_leaf_id",
        "tree",
        "title_generated",
        "system_prompt",
        "temperature",
        "max_tokens",
        "model",
    }
    assert conversation["model"] == "model-f32"  # the one served model, named after its GGUF file
    assert await db.messages.count_documents({"conversation_id": conversation["_id"]}) == 2
    assert conversation["active_leaf_id"] == ObjectId(events[0]["assistantMessageId"])
