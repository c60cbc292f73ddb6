"""DataLoaders: the messages of a page of conversations come from one database query, not one per conversation."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pymongo import monitoring

from backend.main import create_app
from common.settings import load_settings
from tests.conftest import JWT_SECRET

DB_NAME = "chakor_dataloaders"
CONVERSATIONS = 10
PAGE = """{ conversations(first: 10) { edges { node {
  id title messages(last: 10) { role content siblingCount } allMessages(first: 10) { id content } } } } }"""
ONE = """query($id: ID!) { conversation(id: $id) {
  id title messages(last: 10) { role content siblingCount } allMessages(first: 10) { id content } } }"""


class Commands(monitoring.CommandListener):
    """The commands the backend sends to its database, as (command, collection)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name == DB_NAME:
            with self._lock:
                self.seen.append((event.command_name, str(event.command.get(event.command_name))))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def during(self, call: Callable[..., Any], *args: Any) -> tuple[Any, Counter[tuple[str, str]]]:
        """What `call(*args)` returns and the commands sent while it ran."""
        start = len(self.seen)
        result = call(*args)
        return result, Counter(self.seen[start:])


@pytest.fixture(scope="module")
def commands() -> Commands:
    listener = Commands()
    monitoring.register(listener)  # clients created from now on (the backend's below) report to it
    return listener


@pytest.fixture(scope="module")
def client(mongo_uri: str, commands: Commands) -> Iterator[TestClient]:
    settings = load_settings(jwt_secret=JWT_SECRET, mongodb_uri=mongo_uri, db_name=DB_NAME)
    with TestClient(create_app(settings)) as client:
        yield client


def _gql(client: TestClient, query: str, variables: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers).json()
    assert "errors" not in body, body
    return body["data"]


def _export(n: int) -> str:
    """A conversation of two turns, the second answered twice (a branch)."""
    messages = [
        {"id": "q1", "role": "user", "content": f"question {n}"},
        {"id": "a1", "parentId": "q1", "role": "assistant", "content": f"answer {n}"},
        {"id": "q2", "parentId": "a1", "role": "user", "content": f"follow-up {n}"},
        {"id": "a2", "parentId": "q2", "role": "assistant", "content": f"first try {n}"},
        {"id": "a3", "parentId": "q2", "role": "assistant", "content": f"second try {n}"},
    ]
    document = {"format": "chakor.conversation", "version": 1, "title": f"chat {n}", "messages": messages}
    return json.dumps({**document, "activeLeafId": "a3" if n % 2 else "a2"})


@pytest.fixture(scope="module")
def token(client: TestClient) -> str:
    """An account with CONVERSATIONS imported conversations."""
    register = 'mutation { register(email: "loader@chakor.test", password: "correct-horse-battery-staple") { accessToken } }'
    login = 'mutation { login(email: "loader@chakor.test", password: "correct-horse-battery-staple") { accessToken } }'
    _gql(client, register, {})  # answers alike for every address: the token comes from login
    access = _gql(client, login, {})["login"]["accessToken"]
    for n in range(CONVERSATIONS):
        imported = "mutation($d: String!) { importConversation(data: $d) { id } }"
        _gql(client, imported, {"d": _export(n)}, access)
    return str(access)


def test_a_page_of_conversations_reads_messages_in_one_query(
    client: TestClient, commands: Commands, token: str
) -> None:
    data, sent = commands.during(_gql, client, PAGE, {}, token)
    nodes = [edge["node"] for edge in data["conversations"]["edges"]]
    assert len(nodes) == CONVERSATIONS
    # The caller, the page of conversations, and every message of all ten (not one query per conversation).
    assert sent == Counter({("find", "users"): 1, ("find", "conversations"): 1, ("find", "messages"): 1})


def test_batched_results_are_those_of_one_conversation_at_a_time(
    client: TestClient, commands: Commands, token: str
) -> None:
    page = [edge["node"] for edge in _gql(client, PAGE, {}, token)["conversations"]["edges"]]
    for node in page:
        alone, sent = commands.during(_gql, client, ONE, {"id": node["id"]}, token)
        assert alone["conversation"] == node
        assert sent[("find", "messages")] == 1
    by_title = {node["title"]: node for node in page}
    for n in range(CONVERSATIONS):
        node = by_title[f"chat {n}"]
        leaf = f"second try {n}" if n % 2 else f"first try {n}"
        assert [m["content"] for m in node["messages"]] == [
            f"question {n}",
            f"answer {n}",
            f"follow-up {n}",
            leaf,
        ]
        assert [m["role"] for m in node["messages"]] == ["USER", "ASSISTANT", "USER", "ASSISTANT"]
        assert node["messages"][-1]["siblingCount"] == 2
        assert sorted(m["content"] for m in node["allMessages"]) == sorted(
            [f"question {n}", f"answer {n}", f"follow-up {n}", f"first try {n}", f"second try {n}"]
        )
