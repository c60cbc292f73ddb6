"""DOCUMENTS search end to end: `chakor docs add`, then chat through the GraphQL subscription."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from common.chat import DOCUMENT_RESULTS, SearchMode, with_sources
from common.settings import Settings
from documents.index import DocumentIndex
from tests.conftest import backend_settings, start_backend
from tests.support.graphql import Api, Session
from tests.support.tiny_model import TinyModel
from tests.support.uploads import upload

REPO = Path(__file__).resolve().parents[2]
DOC_SEARCH = "query($q: String!, $n: Int) { documentSearch(query: $q, maxResults: $n) { title url content } }"
MODES = "{ searchModes { mode available reason } }"
NO_DOCUMENTS = "no documents to search yet (upload some, or an admin adds site collections)"
QUESTION = "What does the Zorblax engine run on?"


@pytest.fixture(scope="module")
def docs_backend(
    mongo_uri: str,
    llama_server: str,
    tiny_model: TinyModel,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    """A backend of its own whose var folder (and so document index) is empty; no Tavily key."""
    settings = backend_settings(
        mongo_uri, llama_server, tiny_model, db_name="chakor_docs", var_dir=tmp_path_factory.mktemp("var")
    )
    process = start_backend(settings, logs_dir / "docs")
    try:
        yield settings
    finally:
        process.stop()


@pytest.fixture(scope="module")
async def docs_api(docs_backend: Settings) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=docs_backend.backend_url, timeout=60) as http:
        yield Api(http, docs_backend.graphql_url.replace("http://", "ws://", 1))


def docs_add(settings: Settings, path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHAKOR_VAR_DIR": str(settings.var_dir)}
    return subprocess.run(
        [sys.executable, "-m", "chakor", "docs", "add", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )


async def test_documents_added_while_running_are_cited_by_the_next_chat(
    docs_backend: Settings, docs_api: Api, tmp_path: Path
) -> None:
    user: Session = await docs_api.register()
    modes = (await docs_api.data(MODES, token=user.access_token))["searchModes"]
    assert modes == [
        {"mode": "OFF", "available": True, "reason": None},
        {
            "mode": "WEB",
            "available": False,
            "reason": "web search is not configured (set CHAKOR_TAVILY_API_KEY)",
        },
        {
            "mode": "DOCUMENTS",
            "available": False,
            "reason": NO_DOCUMENTS,
        },
    ]
    before = await docs_api.chat(user, content=QUESTION, search="DOCUMENTS", maxTokens=2)
    assert before[1]["__typename"] == "ChatSources" and before[1]["available"] is False
    assert before[1]["error"] == (  # the server's index path stays in its log
        "document search unavailable: no documents are indexed (add them with `chakor docs add PATH`)"
    )
    assert before[-1]["__typename"] == "ChatDone"  # the chat goes on without sources
    # another user's upload gives this user nothing to search: DOCUMENTS stays unavailable for them
    other: Session = await docs_api.register()
    uploaded = await upload(docs_api.http, other.access_token, "own.md", b"# Own notes\n\nPrivate words.")
    assert uploaded["__typename"] == "Document"
    modes = (await docs_api.data(MODES, token=user.access_token))["searchModes"]
    assert modes[2] == {"mode": "DOCUMENTS", "available": False, "reason": NO_DOCUMENTS}
    theirs = (await docs_api.data(MODES, token=other.access_token))["searchModes"]
    assert theirs[2] == {"mode": "DOCUMENTS", "available": True, "reason": None}

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "engine.md").write_text("# Zorblax engine\n\nThe Zorblax engine runs on quark fuel.\n")
    (notes / "tea.txt").write_text("Oolong tea is brewed at 90 degrees.\n")
    added = docs_add(docs_backend, notes)
    assert added.returncode == 0, added.stdout + added.stderr

    events = await docs_api.chat(user, content=QUESTION, search="DOCUMENTS", maxTokens=4)
    assert [e["__typename"] for e in events[:3]] == ["ChatStarted", "ChatSources", "ChatToken"]
    engine = {
        "title": "Zorblax engine",
        "url": "engine.md",  # the file's name: its server path is not the client's business
        "content": "The Zorblax engine runs on quark fuel.",
        "score": events[1]["results"][0]["score"],
    }
    assert events[1]["results"][0] == engine and events[1]["available"] is True
    assert [r["title"] for r in events[1]["results"]] == ["Zorblax engine"]  # tea does not match

    client: AsyncMongoClient = AsyncMongoClient(docs_backend.database_uri, tz_aware=True)
    try:
        stored = await client[docs_backend.db_name].messages.find_one(
            {"_id": ObjectId(events[0]["assistantMessageId"])}
        )
    finally:
        await client.close()
    assert [(s["title"], s["url"], s["content"]) for s in stored["sources"]] == [
        ("Zorblax engine", "engine.md", "The Zorblax engine runs on quark fuel.")
    ]
    assert stored["sources_error"] is None and stored["status"] == "complete"
    assert stored["context"] == (
        f"{docs_backend.chat_system_prompt}\n\nDocuments (cite them as [1], [2], ...):\n"
        "[1] Zorblax engine: The Zorblax engine runs on quark fuel."
    )
    # The eval asks through the same retrieval and template.
    index = DocumentIndex(docs_backend.docs_index_dir)
    hits = index.search(QUESTION, DOCUMENT_RESULTS)
    assert with_sources(docs_backend.chat_system_prompt, hits, SearchMode.DOCUMENTS) == stored["context"]

    found = (await docs_api.data(DOC_SEARCH, {"q": "oolong", "n": 1}, user.access_token))["documentSearch"]
    assert found == [{"title": "tea.txt", "url": "tea.txt", "content": "Oolong tea is brewed at 90 degrees."}]
    bad = await docs_api.error(DOC_SEARCH, {"q": "x", "n": 11}, user.access_token)
    assert bad["message"] == "maxResults must be between 1 and 10"


async def test_search_mode_and_the_deprecated_web_search_flag(docs_api: Api) -> None:
    user = await docs_api.register()
    legacy = await docs_api.chat(user, content="hello", webSearch=True, maxTokens=2)
    assert legacy[1] == {
        "__typename": "ChatSources", "results": [], "available": False,
        "error": "web search is not configured (set CHAKOR_TAVILY_API_KEY)",
    }  # fmt: skip
    off = await docs_api.chat(user, content="hello", maxTokens=2)
    assert "ChatSources" not in [e["__typename"] for e in off]
    both = await docs_api.chat(user, content="hello", search="DOCUMENTS", webSearch=True, maxTokens=2)
    assert both == [
        {
            "__typename": "ChatError",
            "code": "BAD_USER_INPUT",
            "message": "webSearch: true contradicts search: DOCUMENTS (webSearch is deprecated)",
        }
    ]
