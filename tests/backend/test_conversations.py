"""Conversations: CRUD, pagination, search, and another user's ids (who learns nothing)."""

from __future__ import annotations

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.graphql import Api, Session

CREATE = (
    "mutation($t: String) { createConversation(title: $t) { id title createdAt updatedAt messages { id } } }"
)
RENAME = "mutation($id: ID!, $t: String!) { renameConversation(id: $id, title: $t) { id title } }"
DELETE = "mutation($id: ID!) { deleteConversation(id: $id) }"
GET = "query($id: ID!) { conversation(id: $id) { id title messages { id role content status } } }"
LIST = """
query($first: Int, $after: String, $search: String) {
  conversations(first: $first, after: $after, search: $search) {
    edges { cursor node { id title } } pageInfo { hasNextPage endCursor }
  }
}
"""


async def create(api: Api, user: Session, title: str | None = None) -> dict:
    return (await api.data(CREATE, {"t": title}, user.access_token))["createConversation"]


async def titles(api: Api, user: Session, **variables: object) -> list[str]:
    data = await api.data(LIST, variables, user.access_token)
    return [edge["node"]["title"] for edge in data["conversations"]["edges"]]


async def test_create_rename_delete(api: Api, alice: Session, db: AsyncDatabase) -> None:
    created = await create(api, alice, "  First chat  ")
    assert created["title"] == "First chat"
    assert created["messages"] == []
    assert created["createdAt"] == created["updatedAt"]
    stored = await db.conversations.find_one({"_id": ObjectId(created["id"])})
    assert stored["user_id"] == ObjectId(alice.id) and stored["title"] == "First chat"

    untitled = await create(api, alice)
    assert untitled["title"] == "New conversation"

    renamed = (await api.data(RENAME, {"id": created["id"], "t": "Renamed"}, alice.access_token))[
        "renameConversation"
    ]
    assert renamed == {"id": created["id"], "title": "Renamed"}
    assert (await db.conversations.find_one({"_id": ObjectId(created["id"])}))["title"] == "Renamed"

    assert (await api.data(DELETE, {"id": created["id"]}, alice.access_token))["deleteConversation"] is True
    assert await db.conversations.find_one({"_id": ObjectId(created["id"])}) is None
    assert (await api.data(GET, {"id": created["id"]}, alice.access_token))["conversation"] is None


async def test_title_validation(api: Api, alice: Session) -> None:
    conversation = await create(api, alice, "ok")
    empty = await api.error(RENAME, {"id": conversation["id"], "t": "   "}, alice.access_token)
    assert empty["message"] == "title must not be empty"
    long = await api.error(CREATE, {"t": "x" * 201}, alice.access_token)
    assert long["message"] == "title must be at most 200 characters"
    nul = await api.error(RENAME, {"id": conversation["id"], "t": "a\x00b"}, alice.access_token)
    assert nul["message"] == "title must not contain NUL characters"


async def test_pagination_newest_first(api: Api, alice: Session) -> None:
    for index in range(5):
        await create(api, alice, f"page {index}")
    first = await api.data(LIST, {"first": 2}, alice.access_token)
    page = first["conversations"]
    assert [e["node"]["title"] for e in page["edges"]] == ["page 4", "page 3"]
    assert page["pageInfo"] == {"hasNextPage": True, "endCursor": page["edges"][-1]["cursor"]}
    rest = await titles(api, alice, first=10, after=page["pageInfo"]["endCursor"])
    assert rest == ["page 2", "page 1", "page 0"]
    bad = await api.error(LIST, {"first": 0}, alice.access_token)
    assert bad["message"] == "first must be between 1 and 100"
    assert (await api.error(LIST, {"first": 101}, alice.access_token))[
        "message"
    ] == "first must be between 1 and 100"
    assert (await api.error(LIST, {"after": "garbage!"}, alice.access_token))["message"] == "invalid cursor"


async def test_search_titles_and_message_text_literally(
    api: Api, alice: Session, bob: Session, db: AsyncDatabase
) -> None:
    await create(api, alice, "Recipes (vegan) [2024]")
    await create(api, alice, "Holiday plans")
    with_text = await create(api, alice, "Misc")
    await db.messages.insert_one(
        {
            "conversation_id": ObjectId(with_text["id"]),
            "user_id": ObjectId(alice.id),
            "role": "user",
            "content": "What is the price of 1.5 kg of rice?",
            "status": "complete",
        }
    )
    await create(api, bob, "Recipes (vegan) [2024] of Bob")
    assert await titles(api, alice, search="(VEGAN) [2024]") == ["Recipes (vegan) [2024]"]
    assert await titles(api, alice, search="1.5 KG") == ["Misc"]
    assert await titles(api, alice, search="1x5") == []  # '.' is literal, not a wildcard
    assert await titles(api, alice, search=".*") == []
    assert await titles(api, bob, search="rice") == []  # only your own messages
    long = await api.error(LIST, {"search": "x" * 201}, alice.access_token)
    assert long["message"] == "search must be at most 200 characters"


async def test_another_users_conversation_reads_as_missing(
    api: Api, alice: Session, bob: Session, db: AsyncDatabase
) -> None:
    mine = await create(api, alice, "Alice's secret")
    missing = str(ObjectId())
    for conversation_id in (mine["id"], missing, "not-an-id"):
        assert (await api.data(GET, {"id": conversation_id}, bob.access_token))["conversation"] is None
        rename = await api.error(RENAME, {"id": conversation_id, "t": "pwned"}, bob.access_token)
        assert rename["message"] == "conversation not found"
        assert rename["extensions"]["code"] == "NOT_FOUND"
        delete = await api.error(DELETE, {"id": conversation_id}, bob.access_token)
        assert delete["message"] == "conversation not found"
        events = await api.chat(bob, conversationId=conversation_id, content="hello")
        assert events == [
            {"__typename": "ChatError", "code": "NOT_FOUND", "message": "conversation not found"}
        ]
    assert await titles(api, bob) == []
    stored = await db.conversations.find_one({"_id": ObjectId(mine["id"])})
    assert stored["title"] == "Alice's secret"
    assert await db.messages.count_documents({"conversation_id": ObjectId(mine["id"])}) == 0
    assert await db.messages.count_documents({"user_id": ObjectId(bob.id)}) == 0


async def test_stop_generation_of_unknown_or_foreign_message(api: Api, bob: Session) -> None:
    stop = "mutation($id: ID!) { stopGeneration(messageId: $id) }"
    assert (await api.data(stop, {"id": str(ObjectId())}, bob.access_token))["stopGeneration"] is False
    assert (await api.data(stop, {"id": "nope"}, bob.access_token))["stopGeneration"] is False


async def test_everything_needs_a_user(api: Api) -> None:
    for query, variables in [
        (LIST, {}),
        (GET, {"id": str(ObjectId())}),
        (CREATE, {"t": "x"}),
        (RENAME, {"id": str(ObjectId()), "t": "x"}),
        (DELETE, {"id": str(ObjectId())}),
        ("{ model { name } }", {}),
        ('{ webSearch(query: "x") { url } }', {}),
        ('mutation { stopGeneration(messageId: "x") }', {}),
        ('mutation { changePassword(oldPassword: "a", newPassword: "b") }', {}),
    ]:
        error = await api.error(query, variables)
        assert error["message"] == "authentication required", query
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
