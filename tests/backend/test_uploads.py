"""Users' own documents on the real stack: uploads over GraphQL multipart, ownership on every path,
formats, limits, and the index staying in step with the database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from common.settings import Settings
from documents.index import DocumentIndex
from tests.backend.test_cli import create_user_cli
from tests.conftest import backend_settings, start_backend
from tests.support.graphql import Api, Session
from tests.support.pdf import pdf_with_text
from tests.support.tiny_model import TinyModel
from tests.support.uploads import upload, upload_response

REPO = Path(__file__).resolve().parents[2]
ADMIN = "uploads-admin@example.test"
MAX_FILES = 15  # per user on this backend: the parallel test sends 20
SEARCH = """query($q: String!, $c: [String!]) {
  documentSearch(query: $q, maxResults: 10, collections: $c) { title url collection }
}"""
DOCUMENTS = "query($c: String) { documents(collection: $c) { id name collection kind bytes passages } }"
COLLECTIONS = "{ collections { name site documents passages bytes source } }"
DELETE_DOCUMENT = "mutation($id: ID!) { deleteDocument(id: $id) }"
DELETE_COLLECTION = "mutation($n: String!) { deleteCollection(name: $n) }"
DELETE_SITE = "mutation($n: String!) { deleteSiteCollection(name: $n) }"
CHAT_SOURCES = """subscription($input: ChatInput!) {
  chat(input: $input) { __typename ... on ChatSources { results { title url collection } available error } }
}"""


@pytest.fixture(scope="module")
def uploads_backend(
    mongo_uri: str,
    llama_server: str,
    tiny_model: TinyModel,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    """A backend of its own (own database, own var folder and so document index), a site collection
    `handbook` added by `chakor docs add`, and an admin."""
    settings = backend_settings(
        mongo_uri,
        llama_server,
        tiny_model,
        db_name="chakor_uploads",
        var_dir=tmp_path_factory.mktemp("var"),
        max_documents_per_user=MAX_FILES,
    )
    site = tmp_path_factory.mktemp("handbook")
    (site / "quasar.md").write_text("# Site quasar guide\n\nThe quasar lamp glows green for everyone.\n")
    added = subprocess.run(
        [sys.executable, "-m", "chakor", "docs", "add", str(site), "--name", "handbook"],
        cwd=REPO,
        env={**os.environ, "CHAKOR_VAR_DIR": str(settings.var_dir)},
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    process = start_backend(settings, logs_dir / "uploads")
    try:
        made = create_user_cli(settings, ADMIN, "--admin")
        assert made.returncode == 0, made.stdout + made.stderr
        yield settings
    finally:
        process.stop()


@pytest.fixture(scope="module")
async def uploads_api(uploads_backend: Settings) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=uploads_backend.backend_url, timeout=120) as http:
        yield Api(http, uploads_backend.graphql_url.replace("http://", "ws://", 1))


@pytest.fixture(scope="module")
async def uploads_db(uploads_backend: Settings) -> AsyncIterator[AsyncDatabase]:
    client: AsyncMongoClient = AsyncMongoClient(uploads_backend.database_uri, tz_aware=True)
    yield client[uploads_backend.db_name]
    await client.close()


async def _search(api: Api, user: Session, query: str, collections: list[str] | None = None) -> list[Any]:
    data = await api.data(SEARCH, {"q": query, "c": collections}, user.access_token)
    return [(r["title"], r["collection"]) for r in data["documentSearch"]]


async def _quota(db: AsyncDatabase, user_id: str) -> tuple[int, int]:
    """The files and bytes counted on a user's document quota."""
    quota = await db.document_quotas.find_one({"user_id": ObjectId(user_id)})
    assert quota is not None
    return quota["files"], quota["bytes"]


async def _chat_sources(api: Api, user: Session, question: str) -> list[tuple[str, str]]:
    events = [
        r["chat"]
        async for r in api.subscribe(
            CHAT_SOURCES,
            {"input": {"content": question, "search": "DOCUMENTS", "maxTokens": 1}},
            user.authorization,
        )
    ]
    [sources] = [e for e in events if e["__typename"] == "ChatSources"]
    assert sources["available"] is True, sources
    return sorted((r["title"], r["collection"]) for r in sources["results"])


async def test_each_user_finds_only_their_own_documents_and_the_sites(uploads_api: Api) -> None:
    alice, bob = await uploads_api.register(), await uploads_api.register()
    mine = await upload(
        uploads_api.http,
        alice.access_token,
        "alice.md",
        b"# Alice quasar notes\n\nMy quasar lamp is blue.",
        "notes",
    )
    assert {k: mine[k] for k in ("__typename", "name", "collection", "kind", "passages")} == {
        "__typename": "Document", "name": "alice.md", "collection": "notes", "kind": "markdown", "passages": 1,
    }  # fmt: skip
    assert mine["bytes"] == len(b"# Alice quasar notes\n\nMy quasar lamp is blue.")
    theirs = await upload(
        uploads_api.http, bob.access_token, "bob.txt", b"Bob's quasar lamp is red.", "notes"
    )
    assert theirs["__typename"] == "Document" and theirs["collection"] == "notes"

    site = ("Site quasar guide", "handbook")
    assert sorted(await _search(uploads_api, alice, "quasar lamp")) == [("Alice quasar notes", "notes"), site]
    assert sorted(await _search(uploads_api, bob, "quasar lamp")) == sorted([("bob.txt", "notes"), site])
    assert await _search(uploads_api, alice, "quasar", ["notes"]) == [("Alice quasar notes", "notes")]
    assert await _search(uploads_api, alice, "quasar", ["handbook"]) == [site]
    assert await _search(uploads_api, alice, "red") == []  # Bob's word: not even a count of it leaks
    assert await _chat_sources(uploads_api, alice, "What colour is the quasar lamp?") == [
        ("Alice quasar notes", "notes"),
        site,
    ]
    assert await _chat_sources(uploads_api, bob, "What colour is the quasar lamp?") == sorted(
        [("bob.txt", "notes"), site]
    )

    listed = (await uploads_api.data(DOCUMENTS, {"c": None}, alice.access_token))["documents"]
    assert [(d["id"], d["name"]) for d in listed] == [(mine["id"], "alice.md")]
    collections = (await uploads_api.data(COLLECTIONS, token=alice.access_token))["collections"]
    assert collections == [
        {
            "name": "notes",
            "site": False,
            "documents": 1,
            "passages": 1,
            "bytes": mine["bytes"],
            "source": None,
        },
        {"name": "handbook", "site": True, "documents": 1, "passages": 1, "bytes": None, "source": None},
    ]


async def test_another_users_document_or_collection_is_refused_on_every_path(
    uploads_api: Api, uploads_db: AsyncDatabase
) -> None:
    alice, bob = await uploads_api.register(), await uploads_api.register()
    doc = await upload(
        uploads_api.http, alice.access_token, "plan.txt", b"The nebula plan is secret.", "private"
    )
    assert doc["__typename"] == "Document"

    refused = await uploads_api.error(DELETE_DOCUMENT, {"id": doc["id"]}, bob.access_token)
    assert (refused["message"], refused["extensions"]["code"]) == ("document not found", "NOT_FOUND")
    refused = await uploads_api.error(DELETE_DOCUMENT, {"id": str(ObjectId())}, bob.access_token)
    assert refused["message"] == "document not found"  # a missing id reads the same
    refused = await uploads_api.error(DELETE_DOCUMENT, {"id": "not-an-id"}, bob.access_token)
    assert refused["message"] == "document not found"
    refused = await uploads_api.error(DELETE_COLLECTION, {"n": "private"}, bob.access_token)
    assert (refused["message"], refused["extensions"]["code"]) == ("collection not found", "NOT_FOUND")
    refused = await uploads_api.error(DELETE_SITE, {"n": "handbook"}, bob.access_token)
    assert (refused["message"], refused["extensions"]["code"]) == ("admin only", "FORBIDDEN")
    assert (await uploads_api.data(DOCUMENTS, {"c": "private"}, bob.access_token))["documents"] == []
    assert await _search(uploads_api, bob, "nebula plan", ["private"]) == []
    # Bob uploading into a collection named like Alice's makes his own, touching nothing of hers.
    own = await upload(uploads_api.http, bob.access_token, "mine.txt", b"Bob's nebula.", "private")
    assert own["__typename"] == "Document"
    assert (await uploads_api.data(DELETE_COLLECTION, {"n": "private"}, bob.access_token))["deleteCollection"]
    assert await _search(uploads_api, alice, "nebula plan") == [("plan.txt", "private")]

    # Her own delete takes it out of search at once and gives the quota back.
    assert (await uploads_api.data(DELETE_DOCUMENT, {"id": doc["id"]}, alice.access_token))["deleteDocument"]
    assert await _search(uploads_api, alice, "nebula plan") == []
    assert await _quota(uploads_db, alice.id) == (0, 0)
    assert await uploads_db.documents.count_documents({"user_id": ObjectId(alice.id)}) == 0


async def test_formats_are_read_by_content_and_refusals_name_the_file(uploads_api: Api) -> None:
    user = await uploads_api.register()
    token = user.access_token
    pdf = await upload(
        uploads_api.http, token, "manual.pdf", pdf_with_text(["The pulsar valve opens at noon."])
    )
    assert (pdf["__typename"], pdf["kind"], pdf["collection"]) == ("Document", "pdf", "uploads")
    assert await _search(uploads_api, user, "pulsar valve") == [("manual", "uploads")]

    page = b"<html><head><title>Comet page</title><script>var meteorite = 1;</script></head>" \
        b"<body><style>.meteorite{}</style><p>The comet tail points away.</p></body></html>"  # fmt: skip
    html = await upload(uploads_api.http, token, "comet.html", page)
    assert (html["__typename"], html["kind"]) == ("Document", "html")
    assert await _search(uploads_api, user, "comet tail") == [("Comet page", "uploads")]
    assert await _search(uploads_api, user, "meteorite") == []  # scripts and styles are not text

    cases = {
        "photo.txt": (
            bytes(range(256)) * 40,
            "photo.txt: binary content, not a text, Markdown, HTML or PDF file",
        ),
        "locked.pdf": (pdf_with_text(["secret"], password="pw"), "locked.pdf: the PDF is encrypted"),
        "scan.pdf": (
            pdf_with_text([""]),
            "scan.pdf: the PDF has no text layer (a scan?); it cannot be searched",
        ),
        "logo.png": (
            b"\x89PNG\r\n\x1a\n" + bytes(64),
            "logo.png: a PNG image, not a text, Markdown, HTML or PDF file",
        ),
        "empty.txt": (b"  \n", "empty.txt: the file holds no text"),
    }
    for name, (data, message) in cases.items():
        assert await upload(uploads_api.http, token, name, data) == {
            "__typename": "UploadRefusal", "code": "UPLOAD_REFUSED", "message": message,
        }, name  # fmt: skip
    bad_name = await upload(uploads_api.http, token, "a.txt", b"text", "../etc")
    assert bad_name["code"] == "BAD_USER_INPUT" and "collection name" in bad_name["message"]
    listed = (await uploads_api.data(DOCUMENTS, {"c": None}, token))["documents"]
    assert sorted(d["name"] for d in listed) == ["comet.html", "manual.pdf"]  # refusals kept nothing

    # Multipart only on its route, and only with the preflight header (CSRF); JSON cannot carry a file.
    no_header = await upload_response(uploads_api.http, token, "a.txt", b"text", preflight=False)
    assert no_header.status_code == 400 and "Apollo-Require-Preflight" in no_header.text
    main_route = await upload_response(uploads_api.http, token, "a.txt", b"text", path="/graphql")
    assert main_route.status_code == 400 and "Unsupported content type" in main_route.text
    json_route = await uploads_api.http.post("/graphql/upload", json={"query": "{ me { id } }"})
    assert json_route.status_code == 415
    as_json = await uploads_api.data(
        "mutation($f: Upload!) { uploadDocument(file: $f) { ... on UploadRefusal { message } } }",
        {"f": "pretend-file"},
        token,
    )
    assert as_json["uploadDocument"] == {
        "message": "send the file as a GraphQL multipart request to /graphql/upload"
    }


async def _answer_to_unfinished_request(settings: Settings, head: bytes, body: bytes) -> bytes:
    """Send `head` and `body` but never the request's end, and return the server's answer: one that
    comes proves it was given before the whole body (which never arrives) was read."""
    reader, writer = await asyncio.open_connection(settings.backend_host, settings.backend_port)
    try:
        writer.write(head + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 30)
    finally:
        writer.close()


async def test_an_oversized_upload_is_refused_before_it_is_read(
    uploads_backend: Settings, uploads_api: Api
) -> None:
    user = await uploads_api.register()
    eleven_mb = 11 * 1000 * 1000
    head = (
        f"POST /graphql/upload HTTP/1.1\r\nHost: 127.0.0.1:{uploads_backend.backend_port}\r\n"
        f"Authorization: Bearer {user.access_token}\r\nApollo-Require-Preflight: 1\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
    ).encode()
    part = b'--x\r\nContent-Disposition: form-data; name="0"; filename="big.txt"\r\n\r\n'

    # An 11 MB Content-Length is refused on its header: 1 MB of the body sent, the rest never.
    declared = head + f"Content-Length: {eleven_mb}\r\n\r\n".encode()
    answer = await _answer_to_unfinished_request(uploads_backend, declared, part + b"a" * (1 << 20))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert f"request body larger than {uploads_backend.max_upload_request_bytes} bytes".encode() in answer

    # Without a Content-Length the body is counted as it streams: 11 MB sent, no end of the body, and
    # the answer comes (a server reading the body to its end would wait for ever).
    data = part + b"a" * eleven_mb
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(c), c) for c in (data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20))
    )
    answer = await _answer_to_unfinished_request(
        uploads_backend, head + b"Transfer-Encoding: chunked\r\n\r\n", chunks
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    listed = (await uploads_api.data(DOCUMENTS, {"c": None}, user.access_token))["documents"]
    assert listed == []


async def test_parallel_uploads_keep_index_database_and_limits_consistent(
    uploads_backend: Settings, uploads_api: Api, uploads_db: AsyncDatabase
) -> None:
    user = await uploads_api.register()
    files = [
        (f"part-{n}.txt", f"Parallel galaxy report number {n}.\n\n" + "stars " * (300 * (n % 3 + 1)))
        for n in range(20)
    ]
    results = await asyncio.gather(
        *(upload(uploads_api.http, user.access_token, name, text.encode(), "reports") for name, text in files)
    )
    stored = [r for r in results if r["__typename"] == "Document"]
    refused = [r for r in results if r["__typename"] == "UploadRefusal"]
    assert len(stored) == MAX_FILES and len(refused) == 20 - MAX_FILES
    assert {r["message"] for r in refused} == {
        f"at most {MAX_FILES} documents per user (CHAKOR_MAX_DOCUMENTS_PER_USER); delete some first"
    }
    owner = ObjectId(user.id)
    assert await uploads_db.documents.count_documents({"user_id": owner, "ready": True}) == MAX_FILES
    assert await _quota(uploads_db, user.id) == (MAX_FILES, sum(r["bytes"] for r in stored))
    index = DocumentIndex(uploads_backend.docs_index_dir)
    assert index.count_owned(user.id) == sum(r["passages"] for r in stored)
    found = await _search(uploads_api, user, "parallel galaxy report", ["reports"])
    assert len(found) == 10  # maxResults: every stored file matches

    assert (await uploads_api.data(DELETE_COLLECTION, {"n": "reports"}, user.access_token))[
        "deleteCollection"
    ]
    assert index.count_owned(user.id) == 0
    assert await _quota(uploads_db, user.id) == (0, 0)


async def test_a_deleted_users_documents_go_with_them(
    uploads_backend: Settings, uploads_api: Api, uploads_db: AsyncDatabase
) -> None:
    admin = await uploads_api.login(ADMIN)
    user = await uploads_api.register()
    doc = await upload(uploads_api.http, user.access_token, "diary.md", b"# Diary\n\nThe orbit diary.")
    assert doc["__typename"] == "Document"
    index = DocumentIndex(uploads_backend.docs_index_dir)
    assert index.count_owned(user.id) == 1
    collections = (await uploads_api.data(COLLECTIONS, token=admin.access_token))["collections"]
    assert [(c["name"], c["source"] is not None) for c in collections if c["site"]] == [("handbook", True)]

    deleted = await uploads_api.data(
        "mutation($id: ID!) { deleteUser(userId: $id) }", {"id": user.id}, admin.access_token
    )
    assert deleted["deleteUser"] is True
    assert index.count_owned(user.id) == 0
    owner = ObjectId(user.id)
    assert await uploads_db.documents.count_documents({"user_id": owner}) == 0
    assert await uploads_db.document_quotas.count_documents({"user_id": owner}) == 0
