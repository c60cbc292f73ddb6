"""What `chakor up` hands each part and exposes: llama-server's key, the web app's environment, public
binds with development defaults, the sidecar's host, and log rotation; all against real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import psutil
import pytest

from chakor.services import FRONTEND_SETTINGS, frontend_process, llama_process
from chakor.supervisor import Component
from common.process import ManagedProcess, free_port
from common.settings import ENV_PREFIX, load_settings
from tests.support.graphql import Api
from tests.support.tiny_model import TinyModel
from tests.test_supervisor import chakor, supervising, wait_for

SECRET = "up-security-test-secret-0123456789abcdef"


@pytest.fixture
def up_env(tmp_path: Path) -> dict[str, str]:
    """An isolated stack's environment (own var folder, free ports, in-memory database)."""
    return {
        "CHAKOR_VAR_DIR": str(tmp_path / "var"),
        "CHAKOR_RUNS_DIR": str(tmp_path / "runs"),
        "CHAKOR_DB_PORT": str(free_port()),
        "CHAKOR_DB_STORAGE": "memory",
        "CHAKOR_LLAMA_PORT": str(free_port()),
        "CHAKOR_BACKEND_PORT": str(free_port()),
        "CHAKOR_JWT_SECRET": SECRET,
    }


def test_up_refuses_a_public_bind_with_the_development_secret_unless_insecure(up_env: dict[str, str]) -> None:
    dev = {k: v for k, v in up_env.items() if k != "CHAKOR_JWT_SECRET"}
    env = {**dev, "CHAKOR_BACKEND_HOST": "0.0.0.0"}
    clean = {k: v for k, v in os.environ.items() if k != "CHAKOR_JWT_SECRET"}
    refused = subprocess.run(
        [sys.executable, "-m", "chakor", "up", "--no-frontend", "--model", "/nonexistent.gguf"],
        env={**clean, "COLUMNS": "250", **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert (
        "refusing to listen beyond this host (CHAKOR_BACKEND_HOST=0.0.0.0) with the development JWT secret"
        in " ".join(refused.stdout.split())
    )
    # With --insecure (or a secret) the check passes and `up` goes on to the next problem: the model.
    for args, extra in ((["--insecure"], {}), ([], {"CHAKOR_JWT_SECRET": SECRET})):
        passed = subprocess.run(
            [sys.executable, "-m", "chakor", "up", "--no-frontend", "--model", "/nonexistent.gguf", *args],
            env={**clean, "COLUMNS": "250", **env, **extra}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert passed.returncode == 2
        assert "model not found: /nonexistent.gguf" in " ".join(passed.stdout.split()), passed.stdout
        assert "refusing to listen" not in passed.stdout


def test_up_refuses_to_serve_the_embedded_database_beyond_this_host(up_env: dict[str, str]) -> None:
    result = chakor("up", "--no-frontend", env={**up_env, "CHAKOR_DB_HOST": "0.0.0.0"})
    assert result.returncode == 2
    assert (
        "CHAKOR_DB_HOST=0.0.0.0: the embedded database has no authentication and serves this host only"
        in " ".join(result.stdout.split())
    )


@pytest.fixture
def up_stack(up_env: dict[str, str], tiny_model: TinyModel) -> Iterator[dict[str, dict]]:
    """`chakor up --no-frontend` on the tiny model; yields its components' state."""
    up = subprocess.Popen(
        [sys.executable, "-m", "chakor", "up", "--no-frontend", "--model", str(tiny_model.gguf_path)],
        env={**os.environ, **up_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = Path(up_env["CHAKOR_VAR_DIR"]) / "run" / "state.json"
    try:
        wait_for(lambda: state_file.exists() or up.poll() is not None, seconds=180)
        assert state_file.exists(), up.stdout.read() if up.stdout else ""
        yield json.loads(state_file.read_text())["components"]
        assert chakor("down", env=up_env).returncode == 0
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(timeout=60)


async def test_llama_server_answers_only_the_backend_with_the_key_up_made(
    up_stack: dict[str, dict], up_env: dict[str, str]
) -> None:
    llama, backend = up_stack["llama-server"], up_stack["backend"]
    key = psutil.Process(llama["pid"]).environ()["LLAMA_API_KEY"]
    assert len(key) >= 40  # 32 random bytes, base64
    assert psutil.Process(backend["pid"]).environ()["CHAKOR_LLAMA_API_KEY"] == key
    assert key not in " ".join(psutil.Process(llama["pid"]).cmdline())  # other users can read a cmdline
    llama_url = f"http://127.0.0.1:{llama['port']}"
    async with httpx.AsyncClient(timeout=60) as http:
        assert (await http.get(f"{llama_url}/health")).status_code == 200
        for path in ("/slots", "/props", "/metrics"):
            assert (await http.get(f"{llama_url}{path}")).status_code == 401, path
        anonymous = await http.post(f"{llama_url}/completion", json={"prompt": "hi", "n_predict": 2})
        assert anonymous.status_code == 401
        keyed = await http.get(f"{llama_url}/slots", headers={"Authorization": f"Bearer {key}"})
        assert keyed.status_code == 200
    backend_url = f"http://127.0.0.1:{backend['port']}"
    async with httpx.AsyncClient(base_url=backend_url, timeout=60) as http:
        api = Api(http, backend_url.replace("http://", "ws://") + "/graphql")
        user = await api.register()
        events = await api.chat(user, content="Hello", maxTokens=3)  # the backend sends the key
    assert events[-1]["__typename"] == "ChatDone", events
    assert events[-1]["tokensPredicted"] == 3


def test_llama_server_on_a_public_host_has_no_slots_endpoint(tiny_model: TinyModel, tmp_path: Path) -> None:
    settings = load_settings(llama_host="0.0.0.0", llama_port=free_port(), llama_parallel=1)
    process = llama_process(settings, tiny_model.gguf_path, tmp_path)
    assert "--no-slots" in process.argv
    process.start().wait_healthy(timeout=120)
    try:
        slots = httpx.get(f"http://127.0.0.1:{settings.llama_port}/slots", timeout=30)
    finally:
        process.stop()
    assert slots.status_code == 501, slots.text


def test_the_web_app_inherits_no_secret_and_gets_only_its_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real child environment of the process frontend_process() describes, started as the supervisor
    starts it, while the supervisor's own environment holds every secret (as systemd's EnvironmentFile does)."""
    secrets = {
        "CHAKOR_JWT_SECRET": SECRET,
        "CHAKOR_TAVILY_API_KEY": "tvly-secret",
        "CHAKOR_MONGODB_URI": "mongodb://admin:pw@db.internal:27017",
        "CHAKOR_ADMIN_PASSWORD": "first-admin-password",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(var_dir=tmp_path / "var", llama_api_key="llama-key-0123456789")
    assert settings.jwt_secret == SECRET and settings.tavily_api_key == "tvly-secret"
    dump = tmp_path / "env.json"
    code = f"import json, os; open({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))"
    app = replace(frontend_process(settings, tmp_path), argv=[sys.executable, "-c", code], health_url=None)
    app.start()
    assert app.popen is not None and app.popen.wait(timeout=30) == 0
    env = json.loads(dump.read_text())
    chakor_vars = {name for name in env if name.startswith(ENV_PREFIX)}
    assert chakor_vars == {f"{ENV_PREFIX}{name.upper()}" for name in FRONTEND_SETTINGS}
    assert not set(secrets.values()) & set(env.values())
    assert "llama-key-0123456789" not in env.values()
    assert env["CHAKOR_VAR_DIR"] == str(tmp_path / "var")
    assert env["REFLEX_TELEMETRY_ENABLED"] == "false" and env["PATH"] == os.environ["PATH"]


def test_the_supervisor_rotates_a_growing_log_keeping_the_configured_backups(tmp_path: Path) -> None:
    """A part that writes ~100 KB/s: its log is cut at 20 KB, two old files are kept, none more."""
    port = free_port()
    log = tmp_path / "chatty.log"
    code = (
        "import itertools, socket, sys, time\n"
        f"s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port})); s.listen()\n"
        "for n in itertools.count():\n"
        "    sys.stdout.write(f'line {n:08d} ' + 'x' * 80 + '\\n'); sys.stdout.flush(); time.sleep(0.001)\n"
    )
    component = Component(
        "chatty",
        lambda: ManagedProcess("chatty", [sys.executable, "-c", code], log, health_port=("127.0.0.1", port)),
        "127.0.0.1",
        port,
        start_timeout=30,
    )
    with supervising(component, tmp_path / "state.json", poll_seconds=0.1) as supervisor:
        supervisor.log_max_bytes, supervisor.log_backups = 20_000, 2
        wait_for(lambda: log.with_name("chatty.log.2").exists(), seconds=60)
        time.sleep(1.0)  # several more rotations
    older, newer = (log.with_name(f"chatty.log.{n}").read_text() for n in (2, 1))
    assert not log.with_name("chatty.log.3").exists()
    assert len(older) >= 20_000 and len(newer) >= 20_000
    numbers = [int(line.split()[1]) for text in (older, newer, log.read_text()) for line in text.splitlines()]
    assert numbers == sorted(numbers)  # oldest file first, nothing out of order
