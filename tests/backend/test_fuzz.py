"""Property-based tests: arbitrary inputs to every mutation and to chat never cause a 500,
an unhandled exception (masked as "internal server error") or stored garbage."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from backend.api.router import NOT_AN_OPERATION
from backend.api.schema import INTERNAL_ERROR
from tests.conftest import Backend
from tests.support.graphql import CHAT, Api, Session

texts = st.text(max_size=300) | st.sampled_from(
    ["", " ", "\x00", "a" * 40_000, "<|end|>", "$where", ".*", '{"$gt": ""}']
)
ids = st.text(max_size=30) | st.sampled_from(
    ["", "000000000000000000000000", "6b058e89d9d1a3a7ffab3702", "{}", "null"]
)
json_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
    | st.lists(st.integers(), max_size=3)
)
ints = st.integers(min_value=-(2**31), max_value=2**31 - 1)
maybe = st.none().__or__

MUTATIONS: dict[str, tuple[str, dict[str, st.SearchStrategy[Any]]]] = {
    "register": (
        "mutation($a: String!, $b: String!, $c: String) { register(email: $a, password: $b, displayName: $c) { accessToken user { id } } }",
        {"a": texts, "b": texts, "c": maybe(texts)},
    ),
    "refreshToken": (
        "mutation($a: String!) { refreshToken(refreshToken: $a) { accessToken } }",
        {"a": texts},
    ),
    "logout": ("mutation($a: String!) { logout(refreshToken: $a) }", {"a": texts}),
    "changePassword": (
        "mutation($a: String!, $b: String!) { changePassword(oldPassword: $a, newPassword: $b) }",
        {"a": texts, "b": texts},
    ),
    "createConversation": (
        "mutation($a: String) { createConversation(title: $a) { id title } }",
        {"a": maybe(texts)},
    ),
    "renameConversation": (
        "mutation($a: ID!, $b: String!) { renameConversation(id: $a, title: $b) { id } }",
        {"a": ids, "b": texts},
    ),
    "deleteConversation": ("mutation($a: ID!) { deleteConversation(id: $a) }", {"a": ids}),
    "stopGeneration": ("mutation($a: ID!) { stopGeneration(messageId: $a) }", {"a": ids}),
    "setUserRole": (
        "mutation($a: ID!, $b: Role!) { setUserRole(userId: $a, role: $b) { id } }",
        {"a": ids, "b": st.sampled_from(["USER", "ADMIN", "ROOT", ""])},
    ),
    "setUserDisabled": (
        "mutation($a: ID!, $b: Boolean!) { setUserDisabled(userId: $a, disabled: $b) { id } }",
        {"a": ids, "b": st.booleans()},
    ),
    "deleteUser": ("mutation($a: ID!) { deleteUser(userId: $a) }", {"a": ids}),
    "login": (
        "mutation($a: String!, $b: String!) { login(email: $a, password: $b) { accessToken } }",
        {"a": texts, "b": texts},
    ),
}
FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


def check_body(response: httpx.Response) -> None:
    assert response.status_code in (200, 400), response.text  # 400: a malformed request, never a 500
    body = response.json()
    for error in body.get("errors") or []:
        assert error["message"] != INTERNAL_ERROR, body


@pytest.fixture(scope="module")
async def fuzzer(api: Api) -> Session:
    """A plain user whose inputs are fuzzed."""
    return await api.register(display_name="Fuzzer")


@pytest.fixture(scope="module")
def tokens(admin: Session, fuzzer: Session) -> list[str | None]:
    return [None, fuzzer.access_token, admin.access_token]


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutation_inputs(backend: Backend, tokens: list[str | None], name: str) -> None:
    query, variables = MUTATIONS[name]

    with httpx.Client(base_url=backend.url, timeout=60) as http:

        @FUZZ  # 12 examples: failed logins stay well under the per-client login limit
        @given(
            values=st.fixed_dictionaries(variables),
            token=st.sampled_from(tokens),
            wrong_type=st.booleans(),
            junk=json_values,
        )
        def run(values: dict[str, Any], token: str | None, wrong_type: bool, junk: Any) -> None:
            if wrong_type:  # a value of the wrong type for the first variable
                values = {**values, "a": junk}
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            check_body(http.post("/graphql", json={"query": query, "variables": values}, headers=headers))

        run()


@pytest.mark.parametrize("body", [b"0", b'"{ me { email } }"', b"null", b"true", b"[]"])
def test_json_that_is_not_an_operation_is_a_400(backend: Backend, body: bytes) -> None:
    """Found by the fuzzer below: a body of `0` was a 500 (Strawberry reads `.get` of any JSON value)."""
    response = httpx.post(
        f"{backend.url}/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    expected = "Batching is not enabled" if body == b"[]" else NOT_AN_OPERATION
    assert (response.status_code, response.text) == (400, expected)


def test_raw_request_bodies(backend: Backend) -> None:
    @FUZZ
    @given(
        body=st.binary(max_size=500) | st.text(max_size=500).map(str.encode),
        content_type=st.sampled_from(["application/json", "text/plain", "application/graphql"]),
    )
    def run(body: bytes, content_type: str) -> None:
        response = http.post("/graphql", content=body, headers={"Content-Type": content_type})
        assert response.status_code < 500, response.text

    with httpx.Client(base_url=backend.url, timeout=60) as http:
        run()


def chat_over_websocket(
    url: str, authorization: str, variables: dict[str, Any]
) -> tuple[list[dict], list[dict]]:
    """One chat subscription over graphql-transport-ws: (events, GraphQL errors)."""
    events: list[dict] = []
    with connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], max_size=None) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": authorization}}))
        assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"
        ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": CHAT, "variables": variables}})
        )
        while True:
            message = json.loads(ws.recv(timeout=60))
            if message["type"] == "next" and message["payload"].get("errors"):
                return events, message["payload"]["errors"]
            if message["type"] == "next":
                events.append(message["payload"]["data"]["chat"])
            elif message["type"] == "error":
                return events, message["payload"]
            elif message["type"] == "complete":
                return events, []


def test_chat_inputs(backend: Backend, fuzzer: Session) -> None:
    chat_input = st.fixed_dictionaries(
        {"content": texts},
        optional={
            "conversationId": maybe(ids),
            "webSearch": maybe(st.booleans()),
            "regenerate": maybe(st.booleans()),
            "temperature": maybe(st.floats(allow_nan=False, allow_infinity=False)),
            "maxTokens": maybe(ints),
        },
    )

    @FUZZ
    @given(value=chat_input | json_values)
    def run(value: Any) -> None:
        events, errors = chat_over_websocket(backend.ws_url, fuzzer.authorization, {"input": value})
        for error in errors:  # a GraphQL error (a bad variable), never a masked crash
            assert error["message"] != INTERNAL_ERROR, errors
        if not errors:
            assert events[-1]["__typename"] in ("ChatDone", "ChatError"), events
        if events and events[-1]["__typename"] == "ChatError":
            assert events[-1]["code"] in {
                "BAD_USER_INPUT",
                "NOT_FOUND",
                "CONTEXT_OVERFLOW",
                "RATE_LIMITED",
            }, events

    run()


def test_nothing_stored_is_garbage(backend: Backend, fuzzer: Session) -> None:
    """Fuzzed inputs that store something (accounts, titles, chat messages), then every stored document is
    well-formed. The test stores its own inputs first, so it checks something when it runs alone too."""
    created: list[str] = []
    with httpx.Client(base_url=backend.url, timeout=60) as http:

        def post(query: str, variables: dict[str, Any], token: str | None = None) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
            check_body(response)
            return response.json()

        @FUZZ
        @given(email=texts, password=texts, name=maybe(texts), title=maybe(texts), rename=texts)
        def store(email: str, password: str, name: str | None, title: str | None, rename: str) -> None:
            post(MUTATIONS["register"][0], {"a": email, "b": password, "c": name})
            made = post(MUTATIONS["createConversation"][0], {"a": title}, fuzzer.access_token)
            if made.get("data"):
                conversation_id = made["data"]["createConversation"]["id"]
                created.append(conversation_id)
                post(
                    MUTATIONS["renameConversation"][0],
                    {"a": conversation_id, "b": rename},
                    fuzzer.access_token,
                )

        store()
    for content in (" padded ", "\x00nul", "a" * 40_000, "<|end|> injected", "\u202e rtl"):
        chat_over_websocket(
            backend.ws_url, fuzzer.authorization, {"input": {"content": content, "maxTokens": 1}}
        )
    assert created, "no conversation was stored: the check below would check nothing"
    with MongoClient(backend.settings.database_uri) as client:
        db = client[backend.settings.db_name]
        for user in db.users.find():
            assert (
                re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", user["email"])
                and user["email"] == user["email"].lower()
            )
            assert user["password_hash"].startswith("$argon2id$")
            assert user["role"] in ("user", "admin")
        for conversation in db.conversations.find():
            assert 1 <= len(conversation["title"]) <= 200 and "\x00" not in conversation["title"]
            assert conversation["title"] == conversation["title"].strip()
        for message in db.messages.find():
            assert message["status"] in ("complete", "stopped", "error", "streaming", "interrupted")
            assert ("\x00" not in message["content"] and len(message["content"]) <= 32_000) or message[
                "role"
            ] == "assistant"
