"""deploy/nginx/chakor.conf in front of the real backend: chat tokens stream through it incrementally."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from chakor.services import frontend_process
from common.process import ManagedProcess, free_port, release_port
from common.settings import Settings, load_settings
from tests.conftest import Backend, backend_settings, start_backend, start_slow_llama
from tests.support.graphql import CHAT, PASSWORD, Api
from tests.support.nginx import DOMAIN, NGINX, client_tls, render_config, running_nginx
from tests.support.tiny_model import TinyModel
from tests.support.uploads import upload, upload_response


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


@pytest.mark.parametrize("tls", [True, False])
def test_config_passes_nginx_syntax_check(tmp_path: Path, tls: bool) -> None:
    config = render_config(8000, 3000, free_port(), tmp_path, tls=tls)
    result = subprocess.run([NGINX, "-t", "-c", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_the_shipped_config_serves_https_with_certbots_certificate_paths() -> None:
    site = (Path(__file__).parents[1] / "deploy" / "nginx" / "chakor.conf").read_text()
    assert "listen 443 ssl;" in site and "listen 80;" in site
    assert f"ssl_certificate /etc/letsencrypt/live/{DOMAIN}/fullchain.pem;" in site
    assert f"ssl_certificate_key /etc/letsencrypt/live/{DOMAIN}/privkey.pem;" in site


async def test_https_with_hsts_and_plain_http_redirects_except_certbots_challenge(
    backend: Backend, tmp_path: Path
) -> None:
    """The HTTPS server answers with HSTS; port 80 sends everything to HTTPS with a 301, except the
    ACME challenge files certbot renews the certificate with."""
    http_port = free_port()
    challenge = tmp_path / "certbot" / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True)
    (challenge / "token-123").write_text("token-123.thumbprint")
    with running_nginx(backend.settings.backend_port, tmp_path, tls=True, http_port=http_port) as url:
        assert url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url, verify=client_tls(tmp_path), timeout=30) as https:
            health = await https.get("/healthz")
            api = await https.post("/graphql", json={"query": "{ __typename }"})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as plain:
            redirect = await plain.get("/chat/abc?x=1", headers={"Host": DOMAIN})
            acme = await plain.get("/.well-known/acme-challenge/token-123")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert health.headers["strict-transport-security"] == "max-age=63072000"
    assert api.json() == {"data": {"__typename": "Query"}}
    assert api.headers["strict-transport-security"] == "max-age=63072000"
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"https://{DOMAIN}/chat/abc?x=1"
    assert (acme.status_code, acme.text) == (200, "token-123.thumbprint")


@pytest.fixture
def login_app(backend: Backend, logs_dir: Path) -> Iterator[str]:
    """The web app's login endpoint (chakor_web.server, what the Reflex app mounts in front of itself)
    under granian as the app's production server runs it, with the environment `chakor up` gives the app;
    nginx reaches it from 127.0.0.2, the only trusted proxy. Yields its URL."""
    settings = load_settings(
        **{**backend.settings.model_dump(), "frontend_port": free_port(), "trusted_proxies": ["127.0.0.2"]}
    )
    app = frontend_process(settings, logs_dir / "login-app")
    argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1"]
    app = replace(app, argv=[*argv, "--port", str(settings.frontend_port), "chakor_web.server:routes"], health_url=None,
                  health_port=("127.0.0.1", settings.frontend_port))  # fmt: skip
    app.start().wait_healthy(timeout=60)
    try:
        yield settings.frontend_url
    finally:
        app.stop()


async def test_the_session_cookie_is_host_prefixed_and_secure_only_over_tls_from_the_trusted_proxy(
    backend: Backend, login_app: str, tmp_path: Path
) -> None:
    """Through nginx's HTTPS server the app names its cookie `__Host-chakor_session`, Secure; a client
    that talks to the app directly and claims `X-Forwarded-Proto: https` gets the plain-HTTP cookie."""
    email = f"tls-{uuid.uuid4().hex[:8]}@example.test"
    async with httpx.AsyncClient(base_url=backend.url, timeout=30) as http:
        await Api(http, backend.ws_url).register(email)
    form = {"email": email, "password": PASSWORD}
    frontend_port = int(login_app.rsplit(":", 1)[1])
    with running_nginx(
        backend.settings.backend_port, tmp_path, frontend_port, tls=True, proxy_bind="127.0.0.2"
    ) as url:
        async with httpx.AsyncClient(base_url=url, verify=client_tls(tmp_path), timeout=60) as https:
            proxied = await https.post("/_chakor/login", data=form, headers={"Origin": url})
    async with httpx.AsyncClient(base_url=login_app, timeout=60) as direct:
        forged = await direct.post(
            "/_chakor/login", data=form, headers={"Origin": login_app, "X-Forwarded-Proto": "https"}
        )
    assert (proxied.status_code, proxied.headers["location"]) == (303, "/")
    cookie = proxied.headers["set-cookie"]
    assert cookie.startswith("__Host-chakor_session=")
    assert "; Secure" in cookie and "; Path=/" in cookie and "Domain=" not in cookie
    assert (forged.status_code, forged.headers["location"]) == (303, "/")
    assert forged.headers["set-cookie"].startswith("chakor_session=")
    assert "secure" not in forged.headers["set-cookie"].lower()


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


async def test_a_document_upload_passes_nginx_up_to_the_backends_own_limit(nginx: str) -> None:
    """nginx's 1 MB body cap does not apply to uploads: a 2 MB file is stored through nginx; a body past
    the backend's own limit (10 MiB + 64 KiB) is refused by nginx before any of it reaches the backend."""
    text = b"Otters hold hands while they sleep so they do not drift apart.\n" * 32_000  # 2.0 MB
    async with httpx.AsyncClient(base_url=nginx, timeout=120) as http:
        user = await Api(http, nginx.replace("http", "ws", 1) + "/graphql").register()
        stored = await upload(http, user.access_token, "otters.txt", text)
        assert (stored["__typename"], stored["bytes"]) == ("Document", len(text))
        too_big = b"a" * ((10 << 20) + (100 << 10))
        refused = await upload_response(http, user.access_token, "big.txt", too_big)
        listed = await http.post(
            "/graphql",
            json={"query": "{ documents { name } }"},
            headers={"Authorization": f"Bearer {user.access_token}"},
        )
    assert refused.status_code == 413 and "413 Request Entity Too Large" in refused.text
    assert listed.json()["data"]["documents"] == [{"name": "otters.txt"}]
