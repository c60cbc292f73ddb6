"""deploy/docker-compose.yml is consistent with the nginx config and the settings it passes."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from chakor.services import FRONTEND_SETTINGS
from common import REPO_ROOT
from common.settings import Settings

COMPOSE = REPO_ROOT / "deploy" / "docker-compose.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_stack_has_every_component() -> None:
    services = compose()["services"]
    assert set(services) == {"mongo", "llama", "llama-cuda", "backend", "frontend", "nginx"}
    assert services["mongo"]["image"] == "mongo:7"
    assert services["llama-cuda"]["profiles"] == ["cuda"]


def test_nginx_shares_the_backend_network_so_its_config_works_unchanged() -> None:
    services = compose()["services"]
    assert services["frontend"]["network_mode"] == "service:backend"
    assert services["nginx"]["network_mode"] == "service:backend"
    assert "./nginx/chakor.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    assert "--port" in services["backend"]["command"]
    assert services["backend"]["command"][services["backend"]["command"].index("--port") + 1] == "8000"


def test_every_environment_variable_is_a_setting() -> None:
    env = compose()["x-chakor-env"]
    fields = {f"CHAKOR_{name.upper()}" for name in Settings.model_fields}
    assert set(env) - fields == set()
    assert env["CHAKOR_MONGODB_URI"].startswith("mongodb://mongo:27017")


def test_the_web_app_gets_only_its_own_settings() -> None:
    env = compose()["services"]["frontend"]["environment"]
    assert set(env) - {f"CHAKOR_{name.upper()}" for name in FRONTEND_SETTINGS} == {"REFLEX_API_URL"}
    assert not {
        "CHAKOR_JWT_SECRET",
        "CHAKOR_TAVILY_API_KEY",
        "CHAKOR_MONGODB_URI",
        "CHAKOR_LLAMA_API_KEY",
    } & set(env)


def test_llama_server_demands_the_backends_key_and_hides_its_slots() -> None:
    services = compose()["services"]
    key = compose()["x-chakor-env"]["CHAKOR_LLAMA_API_KEY"]
    assert key.startswith("${CHAKOR_LLAMA_API_KEY:?")  # no default: compose refuses to start without one
    for name in ("llama", "llama-cuda"):
        assert services[name]["environment"] == {"LLAMA_API_KEY": key}
        assert "--no-slots" in services[name]["command"] and "--slots" not in services[name]["command"]


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="docker compose CLI plugin not installed",
)
def test_docker_compose_config_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        env={"CHAKOR_JWT_SECRET": "x" * 32, "CHAKOR_LLAMA_API_KEY": "y" * 32, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
