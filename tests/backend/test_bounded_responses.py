"""Answers bounded by construction: over the widest import allowed (every message a version of the
first turn, CHAKOR_MAX_MESSAGES_PER_CONVERSATION of them), the worst query accepted stays under a fixed size; sizes given as variables are costed at the
resolver's maximum; aliases cannot multiply a conversation's text; the same size limit holds for an
import over HTTP and over the WebSocket; every message status survives export and import."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from websockets.typing import Subprotocol

from backend.api.response_budget import MAX_RESPONSE_CHARS
from tests.conftest import Backend
from tests.support.graphql import TRANSPORT_WS, Api, Session

IMPORT = "mutation($d: String!) { importConversation(data: $d) { id messageCount } }"
EXPORT = "query($id: ID!) { exportConversation(id: $id, format: JSON) }"
# Every accepted query below answers in under this many bytes; the same query shapes over 600 roots
# answered 9.7 MB before siblings were paged.
BYTE_BUDGET = 512 * 1024
EXPENSIVE = "query is too expensive: estimated cost "


def _document(messages: list[dict[str, Any]], title: str = "wide") -> str:
    return json.dumps({"format": "chakor.conversation", "version": 1, "title": title, "messages": messages})


def _roots(count: int, content: str = "v") -> str:
    """`count` versions of one first turn: each is every other's sibling."""
    return _document([{"id": f"m{i}", "role": "user", "content": content} for i in range(count)])


@pytest.fixture(scope="module")
async def widest(api: Api, backend: Backend) -> tuple[Session, str]:
    """A user and the widest conversation an import may hold."""
    user = await api.register()
    width = backend.settings.max_messages_per_conversation
    made = (await api.data(IMPORT, {"d": _roots(width)}, user.access_token))["importConversation"]
    assert made["messageCount"] == width
    return user, made["id"]


async def _sized(api: Api, query: str, variables: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
    response = await api.raw(query, variables, token)
    assert response.status_code == 200, response.text
    return len(response.content), response.json()


@pytest.mark.parametrize(
    "query",
    [
        "query($id: ID!) { conversation(id: $id) { allMessages(first: 100) { siblingIds(first: 100) } } }",
        "query($id: ID!, $n: Int) { conversation(id: $id) { allMessages(first: $n) { siblingIds(first: $n) } } }",
        "query($id: ID!) { conversation(id: $id) { messages(last: 1000) { id siblingCount siblingIndex"
        " previousSiblingId nextSiblingId siblingIds } } }",
    ],
    ids=["largest-pages", "variables", "branch"],
)
async def test_the_worst_sibling_queries_over_the_widest_import_stay_small(
    api: Api, widest: tuple[Session, str], query: str
) -> None:
    user, conversation = widest
    size, body = await _sized(api, query, {"id": conversation, "n": 100}, user.access_token)
    assert "errors" not in body, body["errors"]
    assert size < BYTE_BUDGET
    messages = body["data"]["conversation"].get("allMessages") or body["data"]["conversation"]["messages"]
    assert 1 <= len(messages) <= 100
    assert all(1 <= len(m["siblingIds"]) <= 100 for m in messages)


async def test_sibling_pages_walk_every_version_in_order(api: Api) -> None:
    user = await api.register()
    versions = 250  # three pages: enough to page on twice (a wider tree takes seconds a page to load)
    made = (await api.data(IMPORT, {"d": _roots(versions)}, user.access_token))["importConversation"]
    query = (
        "query($id: ID!, $after: ID) { conversation(id: $id) { messageCount allMessages(first: 100, after: $after)"
        " { id siblingCount siblingIndex previousSiblingId nextSiblingId } } }"
    )
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        found = (await api.data(query, {"id": made["id"], "after": after}, user.access_token))["conversation"]
        assert found["messageCount"] == versions
        if not found["allMessages"]:
            break
        seen += found["allMessages"]
        after = seen[-1]["id"]
    assert len(seen) == versions == len({m["id"] for m in seen})
    assert [m["siblingIndex"] for m in seen] == list(range(versions))
    assert {m["siblingCount"] for m in seen} == {versions}
    assert [m["previousSiblingId"] for m in seen] == [None, *(m["id"] for m in seen[:-1])]
    assert [m["nextSiblingId"] for m in seen] == [*(m["id"] for m in seen[1:]), None]
    page = (
        "query($id: ID!, $a: ID) { conversation(id: $id) { messages { siblingIds(first: 3, after: $a) } } }"
    )
    ids = await api.data(page, {"id": made["id"], "a": seen[10]["id"]}, user.access_token)
    assert ids["conversation"]["messages"][0]["siblingIds"] == [m["id"] for m in seen[11:14]]


@pytest.mark.parametrize(
    "query",
    [
        # twice the largest sibling page: each alias alone is accepted
        "query($id: ID!) { a: conversation(id: $id) { allMessages(first: 100) { siblingIds(first: 100) } }"
        " b: conversation(id: $id) { allMessages(first: 100) { siblingIds(first: 100) } } }",
        # the variable is costed at messages' real maximum (1000), not at a page of 100
        "query($id: ID!, $n: Int) { conversation(id: $id) { messages(last: $n) { siblingIds(first: $n) } } }",
        "query { conversations(first: 100) { edges { node { allMessages { siblingIds } } } } }",
        # forty tree loads at most: a page of 100 conversations' branches is refused
        "query { conversations(first: 100) { edges { node { messages(last: 1) { id } } } } }",
    ],
    ids=["aliases", "variables", "page-of-conversations", "tree-loads"],
)
async def test_queries_past_the_cost_limit_are_refused(
    api: Api, widest: tuple[Session, str], query: str
) -> None:
    user, conversation = widest
    error = await api.error(query, {"id": conversation, "n": 1}, user.access_token)
    assert error["message"].startswith(EXPENSIVE) and error["message"].endswith(" exceeds 20000")


async def test_aliases_cannot_multiply_a_conversations_text(api: Api) -> None:
    user = await api.register()
    text = "t" * 10_000
    conversation = (await api.data(IMPORT, {"d": _roots(90, text)}, user.access_token))["importConversation"]
    aliased = (
        "query($id: ID!) { "
        + " ".join(f"a{i}: conversation(id: $id) {{ allMessages {{ content }} }}" for i in range(20))
        + " }"
    )
    size, body = await _sized(api, aliased, {"id": conversation["id"]}, user.access_token)
    assert size < MAX_RESPONSE_CHARS + BYTE_BUDGET  # 20 copies would be 18 MB
    budget = {e["message"] for e in body["errors"]}
    assert budget == {
        f"the answer would hold more than {MAX_RESPONSE_CHARS} characters of message text; "
        "ask for fewer messages or conversations at a time"
    }
    exports = (
        "query($id: ID!) { "
        + " ".join(f"e{i}: exportConversation(id: $id, format: JSON)" for i in range(20))
        + " }"
    )
    size, body = await _sized(api, exports, {"id": conversation["id"]}, user.access_token)
    assert size < MAX_RESPONSE_CHARS + BYTE_BUDGET and body["errors"]
    one = await api.data(
        "query($id: ID!) { conversation(id: $id) { allMessages { content } } }",
        {"id": conversation["id"]},
        user.access_token,
    )
    assert [m["content"] for m in one["conversation"]["allMessages"]] == [text] * 90


async def test_an_import_meets_the_same_size_limit_over_the_websocket(
    api: Api, db: AsyncDatabase, backend_limit: int
) -> None:
    user = await api.register()
    big = _document([{"id": f"m{i}", "role": "user", "content": "w" * 150_000} for i in range(20)])
    assert len(big) > 2 * backend_limit
    response = await api.raw(IMPORT, {"d": big}, user.access_token)
    assert response.status_code == 413
    async with websockets.connect(api.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)], max_size=None) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": user.authorization}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": IMPORT, "variables": {"d": big}}
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        1009,
        f"message larger than {backend_limit} bytes",
    )
    assert await db.conversations.count_documents({"user_id": ObjectId(user.id)}) == 0


@pytest.fixture
def backend_limit(backend: Backend) -> int:
    return int(backend.settings.max_request_bytes)


async def test_every_status_survives_export_and_import(api: Api, db: AsyncDatabase) -> None:
    user = await api.register()
    statuses = ["complete", "stopped", "error", "interrupted"]
    turns: list[dict[str, Any]] = []
    for i, status in enumerate(statuses):
        turns.append({"id": f"q{i}", "role": "user", "content": f"q{i}"})
        turns.append(
            {"id": f"a{i}", "parentId": f"q{i}", "role": "assistant", "content": f"a{i}", "status": status}
        )
    first = (await api.data(IMPORT, {"d": _document(turns)}, user.access_token))["importConversation"]
    # an answer its backend left behind, marked as the sweep marks it
    await db.messages.update_one(
        {"conversation_id": ObjectId(first["id"]), "content": "a0"}, {"$set": {"status": "interrupted"}}
    )
    exported = json.loads(
        (await api.data(EXPORT, {"id": first["id"]}, user.access_token))["exportConversation"]
    )
    assert [m["status"] for m in exported["messages"] if m["role"] == "assistant"] == [
        "interrupted",
        *statuses[1:],
    ]
    second = (await api.data(IMPORT, {"d": json.dumps(exported)}, user.access_token))["importConversation"]
    again = json.loads(
        (await api.data(EXPORT, {"id": second["id"]}, user.access_token))["exportConversation"]
    )
    assert [(m["content"], m["status"]) for m in again["messages"]] == [
        (m["content"], m["status"]) for m in exported["messages"]
    ]
