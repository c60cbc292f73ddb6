"""The per-client login limit keys on the real client: X-Forwarded-For only from CHAKOR_TRUSTED_PROXIES.

A backend of its own (own database, one attempt per e-mail, so 20 per client) with the default trusted
proxies (127.0.0.1, ::1). Connections from 127.0.0.1 play the proxy; connections bound to 127.0.0.2 (also
loopback, not trusted) play a client that talks to the backend directly and forges the header.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from backend.services.auth import CLIENT_ATTEMPTS_FACTOR
from common.settings import Settings
from tests.conftest import backend_settings, start_backend
from tests.support.graphql import PASSWORD, Api
from tests.support.tiny_model import TinyModel

WINDOW_SECONDS = 3600
PER_CLIENT = 1 * CLIENT_ATTEMPTS_FACTOR  # CHAKOR_LOGIN_MAX_ATTEMPTS=1
BAD_CREDENTIALS = "invalid e-mail or password"
LIMITED = re.compile(r"too many login attempts; try again in (\d+) s")
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { user { email } } }"
UNTRUSTED_PEER = "127.0.0.2"


@pytest.fixture(scope="module")
def limited_backend(
    mongo_uri: str, llama_server: str, tiny_model: TinyModel, logs_dir: Path
) -> Iterator[Settings]:
    settings = backend_settings(
        mongo_uri,
        llama_server,
        tiny_model,
        db_name=f"chakor_login_limit_{uuid.uuid4().hex[:8]}",
        login_max_attempts=1,
        login_window_seconds=WINDOW_SECONDS,
    )
    process = start_backend(settings, logs_dir)
    try:
        yield settings
    finally:
        process.stop()


@pytest.fixture
async def proxy(limited_backend: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client connecting from 127.0.0.1, a trusted proxy."""
    async with httpx.AsyncClient(base_url=limited_backend.backend_url, timeout=30) as http:
        yield http


@pytest.fixture
async def untrusted(limited_backend: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client connecting from 127.0.0.2, which the backend does not trust."""
    transport = httpx.AsyncHTTPTransport(local_address=UNTRUSTED_PEER)
    async with httpx.AsyncClient(
        base_url=limited_backend.backend_url, transport=transport, timeout=30
    ) as http:
        yield http


async def login_error(http: httpx.AsyncClient, forwarded_for: str, email: str | None = None) -> str:
    """The error message of one login with a wrong password (a fresh e-mail unless given)."""
    variables = {"e": email or f"nobody-{uuid.uuid4().hex[:8]}@example.test", "p": "wrong password"}
    response = await http.post(
        "/graphql",
        json={"query": LOGIN, "variables": variables},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return str(response.json()["errors"][0]["message"])


def assert_limited(message: str) -> None:
    match = LIMITED.fullmatch(message)
    assert match, message
    assert WINDOW_SECONDS - 300 <= int(match.group(1)) <= WINDOW_SECONDS  # the window, less the test's run


async def failure_keys(settings: Settings) -> dict[str, int]:
    """How many failed logins the backend counted per key (`client:ADDRESS` ones only)."""
    client: AsyncMongoClient = AsyncMongoClient(settings.database_uri)
    try:
        counts: dict[str, int] = {}
        async for event in client[settings.db_name]["login_failures"].find({"key": {"$regex": "^client:"}}):
            counts[event["key"]] = counts.get(event["key"], 0) + 1
        return counts
    finally:
        await client.close()


async def test_a_trusted_proxys_clients_are_limited_one_by_one(
    proxy: httpx.AsyncClient, limited_backend: Settings
) -> None:
    client_a, client_b = "203.0.113.21", "203.0.113.22"
    api = Api(proxy, limited_backend.graphql_url.replace("http://", "ws://", 1))
    user_b = await api.register()
    for _ in range(PER_CLIENT):
        assert await login_error(proxy, f"198.51.100.1, {client_a}") == BAD_CREDENTIALS
    assert_limited(await login_error(proxy, client_a))
    assert_limited(await login_error(proxy, f"198.51.100.2, {client_a}"))  # the left hop is not believed
    assert (await failure_keys(limited_backend)).get(f"client:{client_a}") == PER_CLIENT

    response = await proxy.post(
        "/graphql",
        json={"query": LOGIN, "variables": {"e": user_b.email, "p": PASSWORD}},
        headers={"X-Forwarded-For": client_b},
    )
    assert response.json() == {"data": {"login": {"user": {"email": user_b.email}}}}
    assert await login_error(proxy, client_b) == BAD_CREDENTIALS  # B's own count starts now


async def test_an_untrusted_peers_forwarded_header_is_ignored(
    untrusted: httpx.AsyncClient, proxy: httpx.AsyncClient, limited_backend: Settings
) -> None:
    for attempt in range(PER_CLIENT):  # a new forged address each time: all count against the peer
        assert await login_error(untrusted, f"192.0.2.{attempt + 1}") == BAD_CREDENTIALS
    assert_limited(await login_error(untrusted, "192.0.2.200"))
    counts = await failure_keys(limited_backend)
    assert counts.get(f"client:{UNTRUSTED_PEER}") == PER_CLIENT
    assert [key for key in counts if key.startswith("client:192.0.2.")] == []
    assert await login_error(proxy, "192.0.2.201") == BAD_CREDENTIALS  # that address itself is not limited
