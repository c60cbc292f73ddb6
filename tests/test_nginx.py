"""deploy/nginx/chakor.conf in front of the real backend: chat tokens stream through it incrementally."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from chakor import REPO_ROOT
from chakor.process import ManagedProcess, free_port
from chakor.settings import Settings
from tests.conftest import backend_settings, start_backend, start_slow_llama
from tests.support.tiny_model import TinyModel

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

REGISTER = "mutation($email: String!, $password: String!) { register(email: $email, password: $password) { accessToken } }"
CHAT = gql(
    """subscription($content: String!) {
      chat(input: {content: $content, maxTokens: 48, temperature: 1.0}) {
        __typename
        ... on ChatToken { text }
        ... on ChatDone { messageId tokensPredicted }
        ... on ChatError { code message }
      }
    }"""
)


def render_config(backend_port: int, frontend_port: int, listen_port: int, workdir: Path) -> Path:
    """The shipped config with the test's ports, inside a minimal nginx.conf that runs unprivileged paths."""
    site = (REPO_ROOT / "deploy" / "nginx" / "chakor.conf").read_text()
    site = (
        site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{backend_port};")
        .replace("server 127.0.0.1:3000;", f"server 127.0.0.1:{frontend_port};")
        .replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    )
    assert f"listen 127.0.0.1:{listen_port};" in site and f"127.0.0.1:{backend_port}" in site
    (workdir / "chakor.conf").write_text(site)
    main = workdir / "nginx.conf"
    main.write_text(
        f"""daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    include {workdir}/chakor.conf;
}}
"""
    )
    return main


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
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: `make setup-test` installs Debian's nginx")
    workdir = tmp_path_factory.mktemp("nginx")
    port = free_port()
    config = render_config(slow_backend.backend_port, free_port(), port, workdir)
    subprocess.run([NGINX, "-t", "-c", str(config)], check=True, capture_output=True)
    process = ManagedProcess(
        name="nginx",
        argv=[NGINX, "-c", str(config)],
        log_path=workdir / "nginx.out",
        health_url=f"http://127.0.0.1:{port}/healthz",
    )
    process.start().wait_healthy(timeout=30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def test_config_passes_nginx_syntax_check(tmp_path: Path) -> None:
    config = render_config(8000, 3000, free_port(), tmp_path)
    result = subprocess.run([NGINX, "-t", "-c", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


async def test_chat_tokens_arrive_incrementally_through_nginx(nginx: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{nginx}/graphql",
            json={
                "query": REGISTER,
                "variables": {"email": "nginx@example.com", "password": "correct horse battery"},
            },
        )
    token = response.json()["data"]["register"]["accessToken"]
    transport = WebsocketsTransport(
        url=nginx.replace("http://", "ws://") + "/graphql", init_payload={"Authorization": f"Bearer {token}"}
    )
    started = time.monotonic()
    arrivals: list[tuple[str, float]] = []
    texts: list[str] = []
    async with Client(transport=transport) as session:
        async for result in session.subscribe(CHAT, variable_values={"content": "What does json.dumps do?"}):
            event = result["chat"]
            arrivals.append((event["__typename"], time.monotonic() - started))
            if event["__typename"] == "ChatToken":
                texts.append(event["text"])
            if event["__typename"] in ("ChatDone", "ChatError"):
                break
    kinds = [kind for kind, _ in arrivals]
    assert kinds[-1] == "ChatDone", arrivals
    assert kinds.count("ChatToken") >= 10
    first_token = next(at for kind, at in arrivals if kind == "ChatToken")
    done = arrivals[-1][1]
    # Buffered proxies deliver everything at the end; a streaming one delivers the first token early.
    assert first_token < done / 2, arrivals
    assert len({at for kind, at in arrivals if kind == "ChatToken"}) >= 5
