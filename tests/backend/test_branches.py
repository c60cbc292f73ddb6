"""Messages form a tree: regenerate and edit add versions, selectBranch switches, prompts use the active branch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from beanie import init_beanie
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from backend.models import DOCUMENT_MODELS
from backend.services.conversations import link_legacy_conversations
from common.chat import encode_chat, load_tokenizer
from tests.conftest import Backend
from tests.support.graphql import Api, Session, answer_text
from tests.support.tiny_model import TinyModel

FIELDS = "id parentId siblingIds role content status"
TREE = f"query($id: ID!) {{ conversation(id: $id) {{ systemPrompt messages {{ {FIELDS} }} allMessages {{ {FIELDS} }} }} }}"
SELECT = f"mutation($m: ID!) {{ selectBranch(messageId: $m) {{ id messages {{ {FIELDS} }} }} }}"
USAGE = "{ usage(days: 1) { day tokensIn tokensOut answers } }"


async def tree(api: Api, user: Session, conversation_id: str) -> dict[str, Any]:
    return (await api.data(TREE, {"id": conversation_id}, user.access_token))["conversation"]


async def tokens_in(api: Api, user: Session) -> int:
    return sum(day["tokensIn"] for day in (await api.data(USAGE, None, user.access_token))["usage"])


async def test_regenerate_keeps_the_previous_answer_as_a_sibling(api: Api, alice: Session) -> None:
    first = await api.chat(alice, content="hi there", maxTokens=5, temperature=0.0)
    conversation_id, user_id, old = (
        first[0][k] for k in ("conversationId", "userMessageId", "assistantMessageId")
    )
    again = await api.chat(alice, content="", regenerate=True, conversationId=conversation_id, maxTokens=5)
    new = again[0]["assistantMessageId"]
    assert again[0]["userMessageId"] == user_id and new != old

    found = await tree(api, alice, conversation_id)
    assert [m["id"] for m in found["messages"]] == [user_id, new]
    assert found["messages"][0]["parentId"] is None and found["messages"][0]["siblingIds"] == [user_id]
    assert found["messages"][1]["parentId"] == user_id and found["messages"][1]["siblingIds"] == [old, new]
    everything = {m["id"]: m for m in found["allMessages"]}
    assert set(everything) == {user_id, old, new}
    assert everything[old]["content"] == answer_text(first) and everything[old]["status"] == "COMPLETE"

    switched = (await api.data(SELECT, {"m": old}, alice.access_token))["selectBranch"]
    assert [m["id"] for m in switched["messages"]] == [user_id, old]
    assert [m["id"] for m in (await tree(api, alice, conversation_id))["messages"]] == [user_id, old]


async def test_edit_branches_and_the_prompt_is_the_active_branch_only(
    api: Api, alice: Session, tiny_model: TinyModel
) -> None:
    long_question = "tell me about tokenizers and their vocabularies " * 8
    first = await api.chat(alice, content=long_question, maxTokens=4, temperature=0.0)
    conversation_id, original = first[0]["conversationId"], first[0]["userMessageId"]
    edited = await api.chat(
        alice,
        content="short one",
        editOf=original,
        conversationId=conversation_id,
        maxTokens=4,
        temperature=0.0,
    )
    assert edited[0]["conversationId"] == conversation_id
    edit_id, edit_answer = edited[0]["userMessageId"], edited[0]["assistantMessageId"]

    found = await tree(api, alice, conversation_id)
    assert [m["id"] for m in found["messages"]] == [edit_id, edit_answer]
    assert found["messages"][0]["siblingIds"] == [original, edit_id]
    assert found["messages"][0]["content"] == "short one" and found["messages"][0]["parentId"] is None
    assert len(found["allMessages"]) == 4

    before = await tokens_in(api, alice)
    follow = await api.chat(
        alice, content="and then?", conversationId=conversation_id, maxTokens=4, temperature=0.0
    )
    branch = (await tree(api, alice, conversation_id))["messages"]
    assert [m["id"] for m in branch[:2]] == [edit_id, edit_answer] and branch[2]["parentId"] == edit_answer
    tokenizer = load_tokenizer(tiny_model.tokenizer_dir)
    turns = [{"role": "system", "content": found["systemPrompt"]}] + [
        {"role": m["role"].lower(), "content": m["content"]} for m in branch[:3]
    ]
    expected = len(encode_chat(tokenizer, turns, add_generation_prompt=True).ids)
    assert await tokens_in(api, alice) - before == expected  # llama-server's prompt_n + cache_n

    # The same turns in a linear conversation give the same greedy answer.
    linear = await api.chat(alice, content="short one", maxTokens=4, temperature=0.0)
    assert answer_text(linear) == answer_text(edited)
    linear_follow = await api.chat(
        alice, content="and then?", conversationId=linear[0]["conversationId"], maxTokens=4, temperature=0.0
    )
    assert answer_text(linear_follow) == answer_text(follow)

    back = (await api.data(SELECT, {"m": original}, alice.access_token))["selectBranch"]["messages"]
    assert [m["id"] for m in back] == [original, first[0]["assistantMessageId"]]


async def test_branch_ids_are_checked_for_ownership_and_role(api: Api, alice: Session, bob: Session) -> None:
    first = await api.chat(alice, content="mine", maxTokens=3)
    user_id, answer_id = first[0]["userMessageId"], first[0]["assistantMessageId"]
    error = await api.error(SELECT, {"m": user_id}, bob.access_token)
    assert (error["message"], error["extensions"]["code"]) == ("message not found", "NOT_FOUND")
    error = await api.error(SELECT, {"m": "not-an-id"}, alice.access_token)
    assert error["extensions"]["code"] == "NOT_FOUND"
    stolen = await api.chat(bob, content="edit", editOf=user_id, maxTokens=3)
    assert stolen == [
        {"__typename": "ChatError", "code": "NOT_FOUND", "message": "message to edit not found"}
    ]
    wrong_role = await api.chat(alice, content="edit", editOf=answer_id, maxTokens=3)
    assert wrong_role[0]["code"] == "BAD_USER_INPUT" and "user message" in wrong_role[0]["message"]
    other = await api.chat(alice, content="other", maxTokens=3)
    mixed = await api.chat(
        alice, content="x", editOf=user_id, conversationId=other[0]["conversationId"], maxTokens=3
    )
    assert mixed[0]["message"] == "editOf names a message of another conversation"
    assert len((await tree(api, alice, first[0]["conversationId"]))["allMessages"]) == 2  # nothing stored


async def test_migration_links_conversations_stored_before_branches(
    api: Api, alice: Session, backend: Backend, db: AsyncDatabase
) -> None:
    conversation = ObjectId()
    ids = [ObjectId() for _ in range(3)]
    await db.conversations.insert_one(
        {
            "_id": conversation,
            "user_id": ObjectId(alice.id),
            "title": "old",
            "created_at": _now(),
            "updated_at": _now(),
        }
    )
    for index, (message_id, role) in enumerate(zip(ids, ["user", "assistant", "user"], strict=True)):
        await db.messages.insert_one(
            {
                "_id": message_id,
                "conversation_id": conversation,
                "user_id": ObjectId(alice.id),
                "role": role,
                "content": f"turn {index}",
                "status": "complete",
                "created_at": _now(index),
            }
        )
    client: AsyncMongoClient = AsyncMongoClient(backend.settings.database_uri, tz_aware=True)
    try:
        await init_beanie(database=client[backend.settings.db_name], document_models=DOCUMENT_MODELS)
        assert await link_legacy_conversations() >= 1
        assert await link_legacy_conversations() == 0
    finally:
        await client.close()
    found = await tree(api, alice, str(conversation))
    assert [(m["content"], m["parentId"]) for m in found["messages"]] == [
        ("turn 0", None),
        ("turn 1", str(ids[0])),
        ("turn 2", str(ids[1])),
    ]
    reply = await api.chat(alice, content="new turn", conversationId=str(conversation), maxTokens=3)
    assert (await tree(api, alice, str(conversation)))["messages"][3]["parentId"] == str(ids[2])
    assert reply[-1]["__typename"] == "ChatDone"


def _now(offset_ms: int = 0) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=offset_ms)
