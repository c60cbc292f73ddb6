"""Per-conversation settings, usage per day and the daily token quota, export and import."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import Backend, backend_settings, start_backend
from tests.support.graphql import Api, Session, answer_text
from tests.support.tiny_model import TinyModel

SETTINGS = "systemPrompt temperature maxTokens usesDefaults"
CREATE = f"mutation($t: String, $i: ConversationInput) {{ createConversation(title: $t, input: $i) {{ id title {SETTINGS} }} }}"
UPDATE = f"mutation($id: ID!, $i: ConversationInput!) {{ updateConversation(id: $id, input: $i) {{ id title {SETTINGS} }} }}"
EXPORT = "query($id: ID!, $f: ExportFormat!) { exportConversation(id: $id, format: $f) }"
IMPORT = "mutation($d: String!) { importConversation(data: $d) { id title systemPrompt messages { id parentId siblingIds role content } allMessages { id content } } }"
USAGE = "{ usage(days: 7) { day tokensIn tokensOut answers } }"
QUOTA = 40


async def test_settings_default_to_the_servers_and_change_per_conversation(
    api: Api, alice: Session, backend: Backend, db: AsyncDatabase
) -> None:
    made = (await api.data(CREATE, {"t": "tuned"}, alice.access_token))["createConversation"]
    assert made["systemPrompt"] == backend.settings.chat_system_prompt
    assert (made["temperature"], made["maxTokens"], made["usesDefaults"]) == (
        None,
        backend.settings.chat_max_tokens,
        True,
    )
    changed = (
        await api.data(
            UPDATE,
            {
                "id": made["id"],
                "i": {"systemPrompt": "Answer in French.", "temperature": 0.0, "maxTokens": 3},
            },
            alice.access_token,
        )
    )["updateConversation"]
    assert (changed["systemPrompt"], changed["temperature"], changed["maxTokens"]) == (
        "Answer in French.",
        0.0,
        3,
    )
    assert changed["title"] == "tuned" and changed["usesDefaults"] is False

    events = await api.chat(alice, content="bonjour", conversationId=made["id"])
    assert events[-1]["tokensPredicted"] == 3  # the conversation's maxTokens
    again = await api.chat(alice, content="bonjour", conversationId=made["id"], regenerate=True)
    assert answer_text(again) == answer_text(events)  # its temperature 0: greedy, the same answer

    reset = (await api.data(UPDATE, {"id": made["id"], "i": {"systemPrompt": None}}, alice.access_token))[
        "updateConversation"
    ]
    assert reset["systemPrompt"] == backend.settings.chat_system_prompt and reset["maxTokens"] == 3
    stored = await db.conversations.find_one({"_id": ObjectId(made["id"])})
    assert stored["system_prompt"] is None and stored["max_tokens"] == 3


async def test_bad_settings_are_refused_and_change_nothing(api: Api, alice: Session, bob: Session) -> None:
    made = (await api.data(CREATE, {"i": {"temperature": 0.5}}, alice.access_token))["createConversation"]
    for bad, message in [
        ({"temperature": 2.5}, "temperature must be between 0 and 2.0"),
        ({"maxTokens": 0}, "maxTokens must be between 1 and 32768"),
        ({"systemPrompt": "x" * 8001}, "systemPrompt must be at most 8000 characters"),
        ({"title": "  "}, "title must not be empty"),
    ]:
        error = await api.error(
            UPDATE, {"id": made["id"], "i": {**bad, "maxTokens": bad.get("maxTokens", 7)}}, alice.access_token
        )
        assert (error["message"], error["extensions"]["code"]) == (message, "BAD_USER_INPUT")
    current = (await api.data(UPDATE, {"id": made["id"], "i": {}}, alice.access_token))["updateConversation"]
    assert (current["temperature"], current["maxTokens"]) == (0.5, 512)
    error = await api.error(UPDATE, {"id": made["id"], "i": {"title": "mine"}}, bob.access_token)
    assert (error["message"], error["extensions"]["code"]) == ("conversation not found", "NOT_FOUND")


async def test_usage_counts_tokens_and_answers_per_day(api: Api, alice: Session, admin: Session) -> None:
    first = await api.chat(alice, content="count me", maxTokens=5)
    second = await api.chat(alice, content="again", maxTokens=4, conversationId=first[0]["conversationId"])
    (day,) = (await api.data(USAGE, None, alice.access_token))["usage"]
    assert day["answers"] == 2
    assert day["tokensOut"] == first[-1]["tokensPredicted"] + second[-1]["tokensPredicted"]
    assert day["tokensIn"] > 0
    rows = (
        await api.data(
            "{ usageByUser(days: 1) { userId email day tokensOut answers } }", None, admin.access_token
        )
    )["usageByUser"]
    mine = [r for r in rows if r["userId"] == alice.id]
    assert mine == [
        {
            "userId": alice.id,
            "email": alice.email,
            "day": day["day"],
            "tokensOut": day["tokensOut"],
            "answers": 2,
        }
    ]
    error = await api.error("{ usageByUser { userId } }", None, alice.access_token)
    assert error["extensions"]["code"] == "FORBIDDEN"
    error = await api.error("{ usage(days: 0) { day } }", None, alice.access_token)
    assert error["message"] == "days must be between 1 and 366"


@pytest.fixture(scope="module")
async def quota_api(
    mongo_uri: str, llama_server: str, tiny_model: TinyModel, logs_dir: Path
) -> AsyncIterator[Api]:
    """A backend of its own with CHAKOR_DAILY_TOKEN_QUOTA set (and open sign-up)."""
    settings = backend_settings(
        mongo_uri, llama_server, tiny_model, db_name="chakor_quota", daily_token_quota=QUOTA, signup="open"
    )
    process = start_backend(settings, logs_dir / "quota")
    try:
        async with httpx.AsyncClient(base_url=settings.backend_url, timeout=60) as http:
            yield Api(http, settings.graphql_url.replace("http://", "ws://", 1))
    finally:
        process.stop()


async def test_daily_token_quota_refuses_with_quota_exceeded(quota_api: Api) -> None:
    user = await quota_api.register()
    first = await quota_api.chat(user, content="use up my tokens please", maxTokens=8)
    assert first[-1]["__typename"] == "ChatDone"
    (day,) = (await quota_api.data(USAGE, None, user.access_token))["usage"]
    assert day["tokensIn"] + day["tokensOut"] >= QUOTA
    refused = await quota_api.chat(user, content="one more", maxTokens=2)
    used = day["tokensIn"] + day["tokensOut"]
    assert refused == [
        {
            "__typename": "ChatError",
            "code": "QUOTA_EXCEEDED",
            "message": f"daily token quota used up ({used} of {QUOTA} tokens); it resets at 00:00 UTC",
        }
    ]
    other = await quota_api.register()
    assert (await quota_api.chat(other, content="hi", maxTokens=2))[-1]["__typename"] == "ChatDone"


async def test_export_then_import_round_trips_the_tree(api: Api, alice: Session, bob: Session) -> None:
    first = await api.chat(alice, content="export me", maxTokens=4)
    conversation_id = first[0]["conversationId"]
    await api.chat(alice, content="", regenerate=True, conversationId=conversation_id, maxTokens=4)
    await api.data(
        UPDATE,
        {"id": conversation_id, "i": {"systemPrompt": "Be brief.", "title": "Exported"}},
        alice.access_token,
    )
    exported = (await api.data(EXPORT, {"id": conversation_id, "f": "JSON"}, alice.access_token))[
        "exportConversation"
    ]
    document = json.loads(exported)
    assert document["format"] == "chakor.conversation" and len(document["messages"]) == 3

    imported = (await api.data(IMPORT, {"d": exported}, bob.access_token))["importConversation"]
    assert imported["id"] != conversation_id and imported["title"] == "Exported"
    assert imported["systemPrompt"] == "Be brief."
    original = (
        await api.data(
            "query($id: ID!) { conversation(id: $id) { messages { role content siblingIds } allMessages { id content } } }",
            {"id": conversation_id},
            alice.access_token,
        )
    )["conversation"]
    assert [(m["role"], m["content"], len(m["siblingIds"])) for m in imported["messages"]] == [
        (m["role"], m["content"], len(m["siblingIds"])) for m in original["messages"]
    ]
    assert sorted(m["content"] for m in imported["allMessages"]) == sorted(
        m["content"] for m in original["allMessages"]
    )
    assert not {m["id"] for m in imported["allMessages"]} & {m["id"] for m in original["allMessages"]}
    again = json.loads(
        (await api.data(EXPORT, {"id": imported["id"], "f": "JSON"}, bob.access_token))["exportConversation"]
    )
    assert [(m["role"], m["content"]) for m in again["messages"]] == [
        (m["role"], m["content"]) for m in document["messages"]
    ]

    markdown = (await api.data(EXPORT, {"id": conversation_id, "f": "MARKDOWN"}, alice.access_token))[
        "exportConversation"
    ]
    assert markdown.startswith(
        "# Exported\n\n> System prompt: Be brief.\n\n## User\n\nexport me\n\n## Assistant\n\n"
    )
    error = await api.error(EXPORT, {"id": conversation_id, "f": "JSON"}, bob.access_token)
    assert error["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), "invalid conversation export at format"),
        (lambda d: d["messages"][0].update(role="system"), "invalid conversation export at messages.0.role"),
        (
            lambda d: d["messages"][1].update(parentId="elsewhere"),
            "messages[1]: parentId 'elsewhere' is not an earlier message",
        ),
        (lambda d: d["messages"][1].update(role="user"), "messages[1]: a user message cannot follow a user"),
        (
            lambda d: d["messages"][0].update(userId="65a000000000000000000000"),
            "invalid conversation export at messages.0.userId",
        ),
        (lambda d: d["messages"][1].update(id=d["messages"][0]["id"]), "messages[1]: duplicate id"),
        (lambda d: d.update(messages=d["messages"] * 2501), "invalid conversation export at messages"),
    ],
)
async def test_bad_imports_are_refused_with_a_clear_error_and_store_nothing(
    api: Api, alice: Session, db: AsyncDatabase, change, message: str
) -> None:
    document = {
        "format": "chakor.conversation",
        "version": 1,
        "title": "t",
        "messages": [
            {"id": "a", "parentId": None, "role": "user", "content": "q"},
            {"id": "b", "parentId": "a", "role": "assistant", "content": "r"},
        ],
    }
    change(document)
    before = await db.conversations.count_documents({"user_id": ObjectId(alice.id)})
    error = await api.error(IMPORT, {"d": json.dumps(document)}, alice.access_token)
    assert error["message"].startswith(message) and error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await db.conversations.count_documents({"user_id": ObjectId(alice.id)}) == before
    error = await api.error(IMPORT, {"d": "not json"}, alice.access_token)
    assert error["message"].startswith("invalid conversation export at document")


GENERATE = "mutation($id: ID!) { generateTitle(id: $id) { id title } }"


def test_clean_title_keeps_titles_and_drops_noise() -> None:
    from backend.services.titles import clean_title

    assert clean_title('  "Tokenizers explained."\nmore text') == "Tokenizers explained"
    assert clean_title("Title: **Python lists**") == "Python lists"
    assert clean_title("<|end|> 12 ) ( 3") is None
    assert clean_title("") is None
    assert clean_title("word " * 12) is None
    assert clean_title("\ufffd\ufffdodule sodule") is None
    assert clean_title("oduleoduleodule story") is None
    assert clean_title("the the cat") is None


async def test_generated_title_after_the_first_answer_and_manual_names_stay(api: Api, alice: Session) -> None:
    question = "What is a tokenizer and how does it split words?"
    events = await api.chat(alice, content=question, maxTokens=6)
    conversation_id = events[0]["conversationId"]
    titled = (await api.data(GENERATE, {"id": conversation_id}, alice.access_token))["generateTitle"]
    title = titled["title"]
    assert title and "\n" not in title and len(title) <= 60
    from backend.services.conversations import title_from_message
    from backend.services.titles import clean_title

    assert clean_title(title) == title or title == title_from_message(question)
    await api.data(
        'mutation($id: ID!) { renameConversation(id: $id, title: "Mine") { id } }',
        {"id": conversation_id},
        alice.access_token,
    )
    kept = (await api.data(GENERATE, {"id": conversation_id}, alice.access_token))["generateTitle"]
    assert kept["title"] == "Mine"
    empty = (await api.data(CREATE, {}, alice.access_token))["createConversation"]
    error = await api.error(GENERATE, {"id": empty["id"]}, alice.access_token)
    assert error["message"] == "the conversation has no message to title yet"
