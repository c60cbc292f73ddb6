"""One full `chakor up` (database sidecar on SQLite, llama-server on the tiny GGUF, backend, the Reflex app in
prod mode) with real nginx in front, shared by this package's tests; `chakor down` at the end must leave no
process behind.

The app is built with REFLEX_API_URL set to nginx's address, as behind a real proxy: its page then opens the
event WebSocket through nginx. Building it takes minutes on a small machine, so every test here reuses it;
each one first waits until all parts are healthy again, so any one of them can run alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from common.process import free_port
from tests.support.nginx import running_nginx
from tests.support.tiny_model import TinyModel

UP_TIMEOUT_SECONDS = 900  # the first production build of the app, on a busy 2-core machine
COMPONENTS = ["database", "llama-server", "backend", "frontend"]


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `condition` every 0.2 s until it holds; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached within {seconds:.0f} s"
        time.sleep(0.2)


@dataclass
class FullStack:
    """A running `chakor up` with the frontend, its environment and nginx in front of it."""

    env: dict[str, str]
    up: subprocess.Popen[bytes]
    supervisor_log: Path
    nginx_url: str
    nginx_dir: Path

    def chakor(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chakor", *args],
            env={**os.environ, "COLUMNS": "250", **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def state_file(self) -> Path:
        return Path(self.env["CHAKOR_VAR_DIR"]) / "run" / "state.json"

    def components(self) -> dict[str, Any]:
        """The supervisor's record of each component (pid, port, restarts, ...)."""
        return dict(json.loads(self.state_file.read_text())["components"])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.env[f'CHAKOR_{name}_PORT']}"

    def status_rows(self) -> dict[str, list[str]]:
        """`chakor status` as {component: [state, pid, address, uptime, restarts]}."""
        result = self.chakor("status")
        assert result.returncode == 0, result.stdout + result.stderr
        rows = {}
        for line in result.stdout.splitlines():
            cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
            if cells[0] in COMPONENTS:
                rows[cells[0]] = cells[1:]
        return rows

    def all_healthy(self) -> bool:
        return self.state_file.exists() and all(row[0] == "healthy" for row in self.status_rows().values())

    def log(self) -> str:
        """What the supervisor printed so far, whitespace collapsed."""
        return " ".join(self.supervisor_log.read_text(errors="replace").split())


def stack_env(root: Path, nginx_port: int) -> dict[str, str]:
    return {
        "CHAKOR_VAR_DIR": str(root / "var"),
        "CHAKOR_RUNS_DIR": str(root / "runs"),
        "CHAKOR_DB_PORT": str(free_port()),
        "CHAKOR_DB_STORAGE": "sqlite",  # users survive a database restart
        "CHAKOR_LLAMA_PORT": str(free_port()),
        "CHAKOR_BACKEND_PORT": str(free_port()),
        "CHAKOR_FRONTEND_PORT": str(free_port()),
        "CHAKOR_JWT_SECRET": "full-stack-test-secret-0123456789abcdef",
        "REFLEX_API_URL": f"http://127.0.0.1:{nginx_port}",
        # Its own build folders: a `reflex` run elsewhere on this machine cannot clobber them.
        "REFLEX_WEB_WORKDIR": str(root / "reflex" / "web"),
        "REFLEX_STATES_WORKDIR": str(root / "reflex" / "states"),
    }


@pytest.fixture(scope="package")
def full_stack(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullStack]:
    root = tmp_path_factory.mktemp("full-stack")
    nginx_port = free_port()
    env = stack_env(root, nginx_port)
    supervisor_log = root / "chakor-up.log"
    with supervisor_log.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "chakor", "up", "--model", str(tiny_model.gguf_path)],
            env={**os.environ, "COLUMNS": "250", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    nginx_dir = root / "nginx"
    nginx_dir.mkdir()
    try:
        state_file = Path(env["CHAKOR_VAR_DIR"]) / "run" / "state.json"
        wait_for(lambda: state_file.exists() or up.poll() is not None, UP_TIMEOUT_SECONDS, "chakor up")
        assert state_file.exists(), supervisor_log.read_text()
        backend_port, frontend_port = int(env["CHAKOR_BACKEND_PORT"]), int(env["CHAKOR_FRONTEND_PORT"])
        with running_nginx(backend_port, nginx_dir, frontend_port, nginx_port) as nginx_url:
            stack = FullStack(env, up, supervisor_log, nginx_url, nginx_dir)
            yield stack
            stop_and_check_no_orphans(stack)
    finally:
        if up.poll() is None:
            up.terminate()  # the supervisor stops its children on SIGTERM
            up.wait(timeout=120)


def stack_processes(stack: FullStack) -> list[psutil.Process]:
    """Every process on this machine started for this stack (they inherit its CHAKOR_VAR_DIR), orphans too."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("CHAKOR_VAR_DIR") == stack.env["CHAKOR_VAR_DIR"]:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_and_check_no_orphans(stack: FullStack) -> None:
    """`chakor down` stops the supervisor and every process under it (each component's own children too);
    whatever it leaves is killed here, after the check, so a failure leaves nothing running either."""
    assert len(stack_processes(stack)) > len(COMPONENTS)  # the check below finds this stack's processes
    down = stack.chakor("down", timeout=120)
    exited = stack.up.wait(timeout=30)
    left = stack_processes(stack)
    left_cmdlines = [p.cmdline() for p in left]
    for process in left:
        process.kill()
    assert (down.returncode, down.stdout.strip()) == (0, "Chakor stopped."), down.stdout + down.stderr
    assert exited == 0
    assert not stack.state_file.exists()
    assert left_cmdlines == []
