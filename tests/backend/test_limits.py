"""Query-shape limits: depth, aliases, cost, tokens, body size; CORS and GraphiQL."""

from __future__ import annotations

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import Backend
from tests.support.graphql import Api, Session


async def test_depth_50_is_rejected(api: Api, alice: Session) -> None:
    inner = "id"
    for _ in range(48):
        inner = f"edges {{ node {{ messages {{ conversationId }} {inner} }} }}"
    body = await api.call(f"{{ conversations {{ {inner} }} }}", token=alice.access_token)
    assert body["data"] is None
    assert any("exceeds maximum operation depth of 10" in e["message"] for e in body["errors"])


async def test_a_thousand_aliases_are_rejected(api: Api, alice: Session) -> None:
    thousand = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(1000)) + " }"
    body = await api.call(thousand, token=alice.access_token)
    assert body["data"] is None  # stopped while parsing, by the token limit
    assert [e["message"] for e in body["errors"]] == [
        "Syntax Error: Document contains more than 2000 tokens. Parsing aborted."
    ]
    three_hundred = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(300)) + " }"
    body = await api.call(three_hundred, token=alice.access_token)
    assert [e["message"] for e in body["errors"]] == ["300 aliases found. Allowed: 20"]


async def test_twenty_aliases_are_fine_but_their_cost_counts(api: Api, alice: Session) -> None:
    fine = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(20)) + " }"
    assert len(await api.data(fine, token=alice.access_token)) == 20
    costly = (
        "{ "
        + " ".join(
            f"c{i}: conversations(first: 100) {{ edges {{ node {{ messages(last: 1000) {{ id }} }} }} }}"
            for i in range(3)
        )
        + " }"
    )
    body = await api.call(costly, token=alice.access_token)
    assert body["data"] is None
    assert body["errors"][0]["message"].startswith("query is too expensive: estimated cost ")
    assert body["errors"][0]["message"].endswith(" exceeds 20000")


async def test_too_many_tokens(api: Api, alice: Session) -> None:
    query = "{ me { " + " ".join(["id"] * 3000) + " } }"
    body = await api.call(query, token=alice.access_token)
    assert body["data"] is None
    assert "2000" in body["errors"][0]["message"]


async def test_huge_page_sizes_are_rejected(api: Api, alice: Session, admin: Session) -> None:
    error = await api.error("{ conversations(first: 101) { edges { cursor } } }", token=alice.access_token)
    assert error["message"] == "first must be between 1 and 100"
    error = await api.error("{ users(first: 2147483647) { edges { cursor } } }", token=admin.access_token)
    assert error["message"].startswith("query is too expensive: estimated cost ")


async def test_a_10mb_request_is_refused_and_nothing_is_stored(
    api: Api, alice: Session, db: AsyncDatabase
) -> None:
    before = await db.conversations.count_documents({"user_id": ObjectId(alice.id)})
    response = await api.raw(
        "mutation($t: String) { createConversation(title: $t) { id } }",
        {"t": "x" * 10_000_000},
        alice.access_token,
    )
    assert response.status_code == 413
    assert response.json() == {"errors": [{"message": "request body larger than 1048576 bytes"}]}
    assert await db.conversations.count_documents({"user_id": ObjectId(alice.id)}) == before


async def test_cors_allows_configured_origins_only(api: Api, backend: Backend) -> None:
    allowed = backend.settings.cors_origins[0]
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = await api.http.options("/graphql", headers={"Origin": allowed, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == allowed
    evil = await api.http.options("/graphql", headers={"Origin": "https://evil.example", **preflight})
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers


async def test_graphiql_in_development(api: Api) -> None:
    page = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_healthz(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}


def test_graphiql_and_introspection_are_off_in_production(mongo_uri: str) -> None:
    from fastapi.testclient import TestClient

    from backend.main import create_app
    from common.settings import load_settings
    from tests.conftest import JWT_SECRET

    introspect = {"query": "{ __schema { queryType { name } } }"}
    for graphiql, status in ((None, 404), (True, 200)):
        settings = load_settings(
            environment="production",
            graphiql=graphiql,
            jwt_secret=JWT_SECRET,
            mongodb_uri=mongo_uri,
            db_name="chakor_ide",
        )
        with TestClient(create_app(settings)) as client:
            assert client.get("/graphql", headers={"Accept": "text/html"}).status_code == status
            body = client.post("/graphql", json=introspect).json()
            if graphiql:
                assert body["data"] == {"__schema": {"queryType": {"name": "Query"}}}
            else:
                assert body["errors"][0]["message"] == (
                    "GraphQL introspection has been disabled, but the requested query contained "
                    "the field '__schema'."
                )
