"""deploy/nginx/chakor.conf in front of the real backend: chat tokens stream through it incrementally."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from common.process import ManagedProcess, free_port, release_port
from common.settings import Settings
from tests.conftest import backend_settings, start_backend, start_slow_llama
from tests.support.graphql import CHAT, Api
from tests.support.nginx import NGINX, render_config, running_nginx
from tests.support.tiny_model import TinyModel


@pytest.fixture(scope="module")
def slow_backend(
    mongo_uri: str, tiny_model: TinyModel, slow_gguf: Path, logs_dir: Path
) -> Iterator[Settings]:
    """A backend on llama-server with the slower model, so an answer streams for about a second."""
    llama = start_slow_llama(slow_gguf, logs_dir / "nginx", free_port())
    assert llama.health_url is not None
    settings = backend_settings(
        mongo_uri,
        llama.health_url.removesuffix("/health"),
        tiny_model,
        db_name="chakor_nginx",
        model_path=slow_gguf,
    )
    backend = start_backend(settings, logs_dir / "nginx")
    try:
        yield settings
    finally:
        backend.stop()
        llama.stop()


@pytest.fixture(scope="module")
def nginx(slow_backend: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx on a loopback port in front of the backend; yields its base URL."""
    with running_nginx(slow_backend.backend_port, tmp_path_factory.mktemp("nginx")) as url:
        yield url


def test_config_passes_nginx_syntax_check(tmp_path: Path) -> None:
    config = render_config(8000, 3000, free_port(), tmp_path)
    result = subprocess.run([NGINX, "-t", "-c", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


async def test_chat_tokens_arrive_incrementally_through_nginx(nginx: str, slow_backend: Settings) -> None:
    """The first token reaches the client through nginx while llama-server is still generating the answer.

    A buffering proxy would hold it back until the answer ends; llama-server's own /slots says whether it
    is still busy when the token arrives (an ordering check, not a timing one).
    """
    busy_at_first_token: list[bool] = []
    events: list[dict] = []
    async with httpx.AsyncClient(base_url=nginx, timeout=60) as http:
        api = Api(http, nginx.replace("http://", "ws://") + "/graphql")
        user = await api.register()
        chat_input = {"content": "What does json.dumps do?", "maxTokens": 200, "temperature": 1.0}
        async for result in api.subscribe(CHAT, {"input": chat_input}, user.authorization):
            event = result["chat"]
            events.append(event)
            if event["__typename"] == "ChatToken" and not busy_at_first_token:
                slots = (await http.get(f"{slow_backend.llama_url}/slots")).json()
                busy_at_first_token.append(any(slot["is_processing"] for slot in slots))
            if event["__typename"] in ("ChatDone", "ChatError"):
                break
    assert events[-1]["__typename"] == "ChatDone", events
    assert busy_at_first_token == [True], "the first token arrived only after generation had finished"
    streamed = "".join(e["text"] for e in events if e["__typename"] == "ChatToken")
    assert events[-1]["tokensPredicted"] == 200, events[-1]  # seeded sampling: no early stop on this prompt
    assert streamed


async def test_everything_but_the_api_goes_to_the_frontend(tmp_path: Path) -> None:
    """`location /` reaches the frontend's port: its page over HTTP and Reflex's /_event WebSocket (upgraded).

    A small websockets server stands in for the Reflex app on the frontend port: what is under test is
    the shipped nginx config's routing, the same for any app there.
    """
    seen_paths: list[str] = []

    def page(connection: ServerConnection, request: WsRequest) -> WsResponse | None:
        seen_paths.append(request.path)
        if request.path == "/_event":
            return None  # go on with the WebSocket handshake
        return connection.respond(HTTPStatus.OK, f"frontend page {request.path}\n")

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(f"echo {message!s}" if isinstance(message, str) else message)

    frontend_port = free_port()
    async with serve(echo, "127.0.0.1", frontend_port, process_request=page):
        release_port(frontend_port)
        listen = free_port()
        config = render_config(free_port(), frontend_port, listen, tmp_path)
        nginx = ManagedProcess("nginx", [NGINX, "-c", str(config)], tmp_path / "nginx.out")
        nginx.start()
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                for _ in range(100):  # until nginx listens
                    try:
                        response = await http.get(f"http://127.0.0.1:{listen}/chat/abc?x=1")
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.1)
            assert (response.status_code, response.text) == (200, "frontend page /chat/abc?x=1\n")
            async with connect(f"ws://127.0.0.1:{listen}/_event") as ws:
                await ws.send("hello")
                assert await ws.recv() == "echo hello"
        finally:
            nginx.stop()
    assert seen_paths == ["/chat/abc?x=1", "/_event"]


async def test_nginx_adds_security_headers_beside_the_backends_policy(nginx: str) -> None:
    async with httpx.AsyncClient(base_url=nginx, timeout=30) as http:
        response = await http.post("/graphql", json={"query": "{ __typename }"})
    policies = response.headers.get_list("content-security-policy")
    assert "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'" in policies
    assert "default-src 'none'; frame-ancestors 'none'" in policies  # the backend's own, for the API
    assert response.headers["x-content-type-options"] == "nosniff"
