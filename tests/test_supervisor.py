"""`chakor up/down/status` and the supervisor, against real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from chakor.services import db_process, llama_process
from chakor.supervisor import Component, Supervisor
from common.process import ManagedProcess, free_port, port_in_use
from common.settings import load_settings
from tests.support.listeners import listener
from tests.support.tiny_model import TinyModel


def chakor(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chakor", *args],
        env={**os.environ, "COLUMNS": "250", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    """Environment for an isolated stack: own var dir, free ports, in-memory database."""
    return {
        "CHAKOR_VAR_DIR": str(tmp_path / "var"),
        "CHAKOR_RUNS_DIR": str(tmp_path / "runs"),
        "CHAKOR_DB_PORT": str(free_port()),
        "CHAKOR_DB_STORAGE": "memory",
        "CHAKOR_LLAMA_PORT": str(free_port()),
        "CHAKOR_BACKEND_PORT": str(free_port()),
        "CHAKOR_FRONTEND_PORT": str(free_port()),
        "CHAKOR_JWT_SECRET": "supervisor-test-secret-0123456789abcdef",
    }


def test_bad_setting_fails_naming_the_variable(stack_env: dict[str, str]) -> None:
    result = chakor("status", env={**stack_env, "CHAKOR_BACKEND_PORT": "eighty"})
    assert result.returncode == 2
    assert "CHAKOR_BACKEND_PORT" in result.stdout
    assert "valid integer" in result.stdout


def test_status_when_nothing_runs(stack_env: dict[str, str]) -> None:
    result = chakor("status", env=stack_env)
    assert result.returncode == 3
    assert "Chakor is not running." in result.stdout


def test_up_refuses_a_port_in_use(stack_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = chakor("up", "--no-frontend", env={**stack_env, "CHAKOR_DB_PORT": str(port)})
    assert result.returncode == 1
    assert f"port {port} (database) is already in use" in " ".join(result.stdout.split())


def test_up_reports_a_missing_gguf(stack_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    result = chakor("up", "--no-frontend", "--model", str(missing), env=stack_env)
    assert result.returncode == 2  # bad input: nothing was started
    assert f"model not found: {missing}" in " ".join(result.stdout.split())


def test_up_reports_a_missing_llama_server(stack_env: dict[str, str], tiny_model: TinyModel) -> None:
    env = {**stack_env, "CHAKOR_LLAMA_SERVER_BIN": "/opt/none/llama-server"}
    result = chakor("up", "--no-frontend", "--model", str(tiny_model.gguf_path), env=env)
    assert result.returncode == 2  # a bad setting: nothing was started
    assert "CHAKOR_LLAMA_SERVER_BIN=/opt/none/llama-server does not exist" in " ".join(result.stdout.split())


def test_supervisor_restarts_a_killed_llama_server(tiny_model: TinyModel, tmp_path: Path) -> None:
    settings = load_settings(llama_port=free_port(), var_dir=tmp_path)
    component = Component(
        "llama-server",
        lambda: llama_process(settings, tiny_model.gguf_path, tmp_path),
        settings.llama_host,
        settings.llama_port,
    )
    with supervising(component, tmp_path / "state.json", poll_seconds=0.2):
        assert component.process is not None
        first_pid = component.process.pid
        component.process.kill()
        deadline = time.monotonic() + 60
        while component.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert component.restarts == 1
        assert component.process.pid != first_pid
        assert httpx.get(f"{settings.llama_url}/health").status_code == 200
        assert (
            json.loads((tmp_path / "state.json").read_text())["components"]["llama-server"]["restarts"] == 1
        )
    assert not psutil.pid_exists(component.process.pid)
    assert not (tmp_path / "state.json").exists()


def test_up_status_down_leaves_no_orphans(stack_env: dict[str, str], tiny_model: TinyModel) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "chakor", "up", "--no-frontend", "--model", str(tiny_model.gguf_path)],
        env={**os.environ, **stack_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = Path(stack_env["CHAKOR_VAR_DIR"]) / "run" / "state.json"
    try:
        deadline = time.monotonic() + 180
        while not state_file.exists() and up.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert state_file.exists(), up.stdout.read() if up.stdout else ""
        state = json.loads(state_file.read_text())
        assert list(state["components"]) == ["database", "llama-server", "backend"]
        pids = [info["pid"] for info in state["components"].values()]

        status = chakor("status", env=stack_env)
        assert status.returncode == 0
        assert status.stdout.count(" healthy ") == 3, status.stdout
        assert stack_env["CHAKOR_BACKEND_PORT"] in status.stdout

        down = chakor("down", env=stack_env)
        assert down.returncode == 0
        assert "Chakor stopped." in down.stdout
        assert up.wait(timeout=30) == 0
        assert not state_file.exists()
        assert [pid for pid in pids if psutil.pid_exists(pid)] == []
    finally:
        if up.poll() is None:
            up.terminate()  # the supervisor stops its children on SIGTERM
            up.wait(timeout=60)


def test_up_reports_a_malformed_gguf_with_llama_servers_own_words(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    result = chakor("up", "--no-frontend", "--model", str(broken), env=stack_env, timeout=120)
    output = " ".join(result.stdout.split())
    assert result.returncode == 1
    assert "cannot start: llama-server exited with code" in output
    assert "before it was healthy; last log lines" in output
    assert "failed to load model" in output
    assert not (Path(stack_env["CHAKOR_VAR_DIR"]) / "run" / "state.json").exists()
    assert not port_in_use("127.0.0.1", int(stack_env["CHAKOR_DB_PORT"]))  # the database it started is gone


def test_logs_prints_a_components_last_lines(stack_env: dict[str, str]) -> None:
    logs = Path(stack_env["CHAKOR_VAR_DIR"]) / "logs"
    logs.mkdir(parents=True)
    (logs / "backend.log").write_text("first\nsecond\nthird\n")
    result = chakor("logs", "backend", "--lines", "2", env=stack_env)
    assert (result.returncode, result.stdout) == (0, "second\nthird\n")
    missing = chakor("logs", "frontend", env=stack_env)
    assert missing.returncode == 2
    assert f"no log for 'frontend' in {logs}" in " ".join(missing.stdout.split())


def wait_for(predicate: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


@contextlib.contextmanager
def supervising(component: Component, state: Path, poll_seconds: float) -> Iterator[Supervisor]:
    """`component` started and watched by a Supervisor in a thread; everything stopped on exit."""
    supervisor = Supervisor([component], state)
    supervisor.start_all()
    watcher = threading.Thread(target=supervisor.watch, kwargs={"poll_seconds": poll_seconds})
    watcher.start()
    try:
        yield supervisor
    finally:
        supervisor.stop_event.set()
        watcher.join()
        supervisor.stop_all()


def test_supervisor_restarts_a_killed_database(tmp_path: Path) -> None:
    settings = load_settings(db_port=free_port(), db_storage="memory", var_dir=tmp_path)
    component = Component(
        "database", lambda: db_process(settings, tmp_path), settings.db_host, settings.db_port
    )
    with supervising(component, tmp_path / "state.json", poll_seconds=0.2):
        assert component.process is not None
        first_pid = component.process.pid
        component.process.kill()
        wait_for(lambda: component.restarts == 1)
        assert component.process.pid != first_pid
        assert port_in_use(settings.db_host, settings.db_port)
        assert component.backoff == 1.0  # reset after a successful restart


def test_restart_backoff_doubles_while_a_component_keeps_failing(tmp_path: Path) -> None:
    """Healthy at first; after it dies, every restart exits at once: waits of 1 s, 2 s, 4 s ..."""
    port = free_port()
    attempts: list[int] = []

    def make() -> ManagedProcess:
        attempts.append(len(attempts))
        code = f"import http.server as h; h.HTTPServer(('127.0.0.1', {port}), h.BaseHTTPRequestHandler).serve_forever()"
        if len(attempts) > 1:
            code = "raise SystemExit(3)"
        return ManagedProcess(
            "flaky", [sys.executable, "-c", code], tmp_path / "flaky.log", health_port=("127.0.0.1", port)
        )

    component = Component("flaky", make, "127.0.0.1", port, start_timeout=10)
    backoffs = [component.backoff]
    with supervising(component, tmp_path / "state.json", poll_seconds=0.1):
        assert component.process is not None
        component.process.kill()
        wait_for(lambda: len(attempts) == 3, seconds=30)  # the first start, then restarts after 1 s and 2 s
        backoffs.append(component.backoff)
    assert backoffs == [1.0, 4.0]
    assert component.restarts == 0


def test_up_with_a_mongodb_uri_starts_no_sidecar_and_restarts_a_killed_backend(
    stack_env: dict[str, str], tiny_model: TinyModel, mongo_uri: str
) -> None:
    env = {**stack_env, "CHAKOR_MONGODB_URI": mongo_uri, "CHAKOR_DB_NAME": "chakor_up_external"}
    up = subprocess.Popen(
        [sys.executable, "-m", "chakor", "up", "--no-frontend", "--model", str(tiny_model.gguf_path)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = Path(stack_env["CHAKOR_VAR_DIR"]) / "run" / "state.json"
    backend_url = f"http://127.0.0.1:{stack_env['CHAKOR_BACKEND_PORT']}"
    try:
        wait_for(lambda: state_file.exists() or up.poll() is not None, seconds=180)
        assert state_file.exists(), up.stdout.read() if up.stdout else ""
        components = json.loads(state_file.read_text())["components"]
        assert list(components) == ["llama-server", "backend"]  # no database sidecar
        assert not port_in_use("127.0.0.1", int(stack_env["CHAKOR_DB_PORT"]))
        first_pid = components["backend"]["pid"]
        os.kill(first_pid, signal.SIGKILL)

        def restarted() -> bool:
            backend = json.loads(state_file.read_text())["components"]["backend"]
            return bool(backend["restarts"] == 1 and backend["pid"] != first_pid)

        wait_for(restarted, seconds=120)
        assert httpx.get(f"{backend_url}/healthz").status_code == 200
        assert chakor("down", env=env).returncode == 0
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(timeout=60)


def test_logs_follow_prints_lines_as_they_are_written(stack_env: dict[str, str]) -> None:
    """A writer appends numbered lines once the tail is printed; `-f` prints every one of them, in order.

    (The tail and the follow share one file handle, so a line written right after the tail is not lost.)
    """
    log = Path(stack_env["CHAKOR_VAR_DIR"]) / "logs" / "backend.log"
    log.parent.mkdir(parents=True)
    log.write_text("old line\nlast line\n")
    follow = subprocess.Popen(
        [sys.executable, "-m", "chakor", "logs", "backend", "--lines", "1", "-f"],
        env={**os.environ, **stack_env},
        stdout=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()

    def write() -> None:
        for number in range(10_000):
            if stop.wait(0.1):
                return
            with log.open("a") as handle:
                handle.write(f"new line {number}\n")

    writer = threading.Thread(target=write)
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "last line\n"
        writer.start()
        assert [follow.stdout.readline() for _ in range(3)] == [f"new line {n}\n" for n in range(3)]
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        follow.kill()
        follow.wait()


def gone(process: psutil.Process) -> bool:
    """Exited (a zombie waiting for init to reap it counts as exited)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_restart_first_kills_what_the_dead_leader_left_holding_its_port(tmp_path: Path) -> None:
    """Like `reflex run`: the component's leader starts the server as a child. SIGKILL on the leader alone
    leaves that child serving; the supervisor must kill it, or the new server cannot bind the port while
    the old one keeps answering the health check."""
    port = free_port()
    server = f"import http.server as h; h.HTTPServer(('127.0.0.1', {port}), h.BaseHTTPRequestHandler).serve_forever()"
    leader = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {server!r}]); time.sleep(3600)"

    def make() -> ManagedProcess:
        return ManagedProcess(
            "app", [sys.executable, "-c", leader], tmp_path / "app.log", health_port=("127.0.0.1", port)
        )

    component = Component("app", make, "127.0.0.1", port, start_timeout=30)
    old_servers: list[psutil.Process] = []
    try:
        with supervising(component, tmp_path / "state.json", poll_seconds=0.1):
            assert component.process is not None and component.process.pid is not None
            first = psutil.Process(component.process.pid)
            old_servers = first.children()
            os.kill(first.pid, signal.SIGKILL)  # the leader only, not its process group
            wait_for(lambda: component.restarts == 1, seconds=30)
            assert component.process.pid is not None
            new_tree = psutil.Process(component.process.pid).children()
            wait_for(lambda: listener(port) is not None, seconds=30)
            assert listener(port) in {child.pid for child in new_tree}
            assert len(old_servers) == 1 and gone(old_servers[0])
    finally:
        for server in old_servers:
            if not gone(server):
                server.kill()  # what a failed check leaves behind
