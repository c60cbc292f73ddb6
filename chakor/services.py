"""The four runtime components (database sidecar, llama-server, backend, frontend) as managed processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common import REPO_ROOT
from common.hosts import is_loopback
from common.llama_cpp import NO_REPACK, llama_server_binary
from common.process import ManagedProcess
from common.settings import ENV_PREFIX, Settings

DB_VENV = REPO_ROOT / ".venv-db"
SIDECAR_SCRIPT = Path(__file__).parent / "sidecar" / "mongo_wire.py"
FRONTEND_DIR = REPO_ROOT / "frontend"
# The only settings the web app reads (chakor_web: the backend's address, its own address and public
# origins, the session store's folder and lifetime, which peers are its proxies). Never the JWT secret,
# the Tavily key, the database URI or llama-server's key: a flaw in the app cannot leak what it lacks.
FRONTEND_SETTINGS = (
    "backend_host",
    "backend_port",
    "frontend_host",
    "frontend_port",
    "cors_origins",
    "trusted_proxies",
    "var_dir",
    "refresh_token_days",
    "public_url",
)


class ComponentError(RuntimeError):
    """A component cannot start; the message says what to install or set."""


def find_python313() -> Path | None:
    """A Python >= 3.13 interpreter on PATH or under pyenv, for the database sidecar."""
    candidates = [shutil.which(f"python3.{minor}") for minor in range(13, 16)]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.1[3-9]*/bin/python3"), reverse=True)]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 13))"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return Path(candidate)
    return None


def db_python() -> Path:
    """The sidecar venv's interpreter, or a clear error saying how to get one."""
    python = DB_VENV / "bin" / "python"
    if python.exists():
        return python
    raise ComponentError(
        "the embedded database needs .venv-db (Python >= 3.13 with mongoeco): run `make setup`, "
        "or install Python 3.13 (e.g. `pyenv install 3.13`), "
        "or set CHAKOR_MONGODB_URI=mongodb://HOST:PORT to use your own MongoDB"
    )


def db_process(settings: Settings, log_dir: Path) -> ManagedProcess:
    """The mongoeco MongoDB-wire sidecar on settings.db_host:db_port, a loopback address only.

    It has no authentication: anyone who reaches its port reads every account. A database shared
    between hosts is a real MongoDB with its own access control (CHAKOR_MONGODB_URI).
    """
    if not is_loopback(settings.db_host):
        raise ComponentError(
            f"CHAKOR_DB_HOST={settings.db_host}: the embedded database has no authentication and serves "
            "this host only (use 127.0.0.1), or set CHAKOR_MONGODB_URI to a MongoDB with access control"
        )
    storage = "memory"
    if settings.db_storage == "sqlite":
        data_dir = settings.var_dir / "db"
        data_dir.mkdir(parents=True, exist_ok=True)
        storage = str(data_dir / f"{settings.db_name}.sqlite")
    return ManagedProcess(
        name="database",
        argv=[str(db_python()), str(SIDECAR_SCRIPT), settings.db_host, str(settings.db_port), storage],
        log_path=log_dir / "database.log",
        health_port=(settings.db_host, settings.db_port),
    )


def trained_context(model: Path) -> int | None:
    """The GGUF's `llama.context_length` (the trained seq_len for our models), or None if unreadable."""
    from gguf import GGUFReader  # imported here: it pulls in numpy

    try:
        field = GGUFReader(model).fields.get("llama.context_length")
        return int(field.contents()) if field is not None else None
    except (OSError, ValueError, KeyError, IndexError, TypeError):  # llama-server reports a bad file itself
        return None


def served_ctx_size(settings: Settings, model: Path) -> int:
    """llama-server's --ctx-size: the configured total, but no more than `parallel` slots of the trained
    context. llama-server caps each slot at that context anyway; the KV cache past it would go unused."""
    trained = trained_context(model)
    if trained is None:
        return settings.llama_ctx_size
    return min(settings.llama_ctx_size, trained * settings.llama_parallel)


def llama_process(settings: Settings, model: Path, log_dir: Path, port: int | None = None) -> ManagedProcess:
    """llama-server serving `model` (a GGUF) with its embedded chat template.

    With `settings.llama_api_key` it answers only requests that carry that key (passed in its
    environment, which other users cannot read, rather than on its command line, which they can);
    /health stays open. On a non-loopback host it also turns off /slots (what each slot is doing).
    """
    if not model.is_file():
        raise ComponentError(f"model not found: {model} (set CHAKOR_MODEL_PATH or pass --model)")
    port = port or settings.llama_port
    return ManagedProcess(
        name="llama-server",
        argv=[
            str(llama_server_binary(settings.llama_server_bin)),
            "--model",
            str(model),
            "--host",
            settings.llama_host,
            "--port",
            str(port),
            "--ctx-size",
            str(served_ctx_size(settings, model)),
            "--threads",
            str(settings.llama_threads),
            "--parallel",
            str(settings.llama_parallel),
            "--jinja",
            "--no-webui",
            "--metrics",
            "--slots" if is_loopback(settings.llama_host) else "--no-slots",
            NO_REPACK,
        ],
        env={"LLAMA_API_KEY": settings.llama_api_key} if settings.llama_api_key else {},
        log_path=log_dir / f"llama-server-{port}.log",
        health_url=f"http://{settings.llama_host}:{port}/health",
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """CHAKOR_* variables that hand every resolved setting of this process to a child process."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            text = value if isinstance(value, str) else json.dumps(value)
            env[f"{ENV_PREFIX}{name.upper()}"] = text
    return env


def backend_process(settings: Settings, log_dir: Path) -> ManagedProcess:
    """The GraphQL API under uvicorn."""
    return ManagedProcess(
        name="backend",
        argv=[
            sys.executable,
            "-m",
            "uvicorn",
            "backend.main:create_app",
            "--factory",
            "--host",
            settings.backend_host,
            "--port",
            str(settings.backend_port),
            "--no-access-log",
            "--ws-per-message-deflate",
            "false",  # tokens are tiny frames: compressing each costs more CPU than it saves bytes
            "--timeout-keep-alive",
            "75",  # longer than nginx's upstream keepalive (60 s), so a reused connection is never half-closed
            "--forwarded-allow-ips",  # X-Forwarded-Proto/-For are believed from these peers only
            ",".join(settings.trusted_proxies),
        ],
        env=settings_env(settings),
        cwd=REPO_ROOT,
        log_path=log_dir / "backend.log",
        health_url=f"{settings.backend_url}/healthz",
    )


def frontend_settings_env(settings: Settings) -> dict[str, str]:
    """The CHAKOR_* variables of FRONTEND_SETTINGS, the only ones the web app gets."""
    wanted = {f"{ENV_PREFIX}{name.upper()}" for name in FRONTEND_SETTINGS}
    return {name: value for name, value in settings_env(settings).items() if name in wanted}


def _not_a_setting(name: str) -> bool:
    return not name.startswith(ENV_PREFIX)


def frontend_process(settings: Settings, log_dir: Path) -> ManagedProcess:
    """The Reflex app, compiled and served in production mode on one port.

    It inherits no CHAKOR_* variable of this process (systemd's EnvironmentFile puts the secrets
    there), only FRONTEND_SETTINGS.
    """
    reflex = Path(sys.executable).with_name("reflex")
    return ManagedProcess(
        name="frontend",
        argv=[
            str(reflex),
            "run",
            "--env",
            "prod",
            "--backend-host",
            settings.frontend_host,
            "--frontend-port",
            str(settings.frontend_port),
            "--backend-port",
            str(settings.frontend_port),
        ],
        env={**frontend_settings_env(settings), **frontend_env()},
        inherit=_not_a_setting,
        cwd=FRONTEND_DIR,
        log_path=log_dir / "frontend.log",
        health_url=f"{settings.frontend_url}/ping",
    )


def npm_registry() -> str:
    """The npm registry this machine's npm is configured with."""
    result = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True)
    return result.stdout.strip()


def frontend_env() -> dict[str, str]:
    """Environment that keeps Reflex offline: bun from the npm registry, no telemetry or version checks."""
    tools = REPO_ROOT / ".tools"
    return {
        "REFLEX_BUN_PATH": str(tools / "node_modules" / "@oven" / "bun-linux-x64" / "bin" / "bun"),
        "REFLEX_DIR": str(FRONTEND_DIR / ".reflex-home"),
        "BUN_INSTALL_CACHE_DIR": str(FRONTEND_DIR / ".bun-cache"),
        "NPM_CONFIG_REGISTRY": npm_registry(),  # Reflex skips its mirror latency probe when this is set
        "REFLEX_CHECK_LATEST_VERSION": "0",
        "REFLEX_TELEMETRY_ENABLED": "false",
    }
