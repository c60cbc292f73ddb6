"""Start the stack's components in order, keep them alive, and stop them all cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from rich.console import Console

from common.process import ManagedProcess, ProcessError, port_in_use

console = Console(stderr=True)

MAX_BACKOFF_SECONDS = 30.0


def rotate_if_large(log: Path, max_bytes: int, backups: int) -> bool:
    """When `log` has reached `max_bytes`: `log.1` .. `log.N` shift up one (the oldest is dropped), `log`
    is copied to `log.1` and emptied. True when it rotated.

    Copy-then-truncate, because the child holds the file open (its stdout) and cannot be told to reopen
    it; it appends (O_APPEND), so after the truncation it writes at the new, empty end. What it writes
    between the copy and the truncation (microseconds) is lost.
    """
    try:
        if log.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    for n in range(backups - 1, 0, -1):
        older = log.with_name(f"{log.name}.{n}")
        if older.exists():
            older.replace(log.with_name(f"{log.name}.{n + 1}"))
    shutil.copyfile(log, log.with_name(f"{log.name}.1"))
    os.truncate(log, 0)
    return True


class SupervisorError(RuntimeError):
    """A component could not be started; the message names it and says why."""


@dataclass
class Component:
    """A named process factory, the port it must own, and its health-check timeout."""

    name: str
    make: Callable[[], ManagedProcess]
    host: str
    port: int
    start_timeout: float = 120.0
    process: ManagedProcess | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0


@dataclass
class Supervisor:
    """Runs components as child processes and records them in `state_file` for `chakor status/down`.

    Each poll also rotates a component's log that has reached `log_max_bytes` (see rotate_if_large).
    """

    components: list[Component]
    state_file: Path
    log_max_bytes: int = 10 << 20
    log_backups: int = 5
    stop_event: threading.Event = field(default_factory=threading.Event)

    def start_all(self) -> None:
        """Start each component in order and wait until it is healthy; on failure stop what started."""
        for component in self.components:
            if port_in_use(component.host, component.port):
                self.stop_all()
                raise SupervisorError(
                    f"port {component.port} ({component.name}) is already in use on {component.host}: "
                    f"stop what uses it or pick another port (CHAKOR_{_port_variable(component.name)})"
                )
            try:
                self._start(component)
            except ProcessError as exc:
                self.stop_all()
                raise SupervisorError(str(exc)) from None
            console.print(f"[green]✓[/] {component.name} healthy on {component.host}:{component.port}")
        self.write_state()

    def _start(self, component: Component) -> None:
        component.process = component.make().start()
        component.started_at = time.time()
        component.process.wait_healthy(component.start_timeout)

    def watch(self, poll_seconds: float = 1.0) -> None:
        """Restart crashed components with exponential backoff until `stop_event` is set."""
        while not self.stop_event.wait(poll_seconds):
            self.rotate_logs()
            for component in self.components:
                if component.process is None or component.process.alive():
                    continue
                code = component.process.popen.returncode if component.process.popen else None
                component.process.stop()  # its leader is gone: kill what it left (they still hold its port)
                console.print(
                    f"[yellow]{component.name} exited (code {code}); restarting in {component.backoff:.0f}s[/]"
                )
                if self.stop_event.wait(component.backoff):
                    return
                component.backoff = min(component.backoff * 2, MAX_BACKOFF_SECONDS)
                try:
                    self._start(component)
                    component.restarts += 1
                    component.backoff = 1.0
                    console.print(f"[green]✓[/] {component.name} restarted")
                except ProcessError as exc:
                    console.print(f"[red]{component.name} failed to restart:[/] {exc}")
                self.write_state()

    def rotate_logs(self) -> None:
        """Rotate every component's log that has grown past `log_max_bytes`."""
        for component in self.components:
            if component.process is not None:
                rotate_if_large(component.process.log_path, self.log_max_bytes, self.log_backups)

    def stop_all(self) -> None:
        """Stop components in reverse start order and forget the state file."""
        for component in reversed(self.components):
            if component.process is not None:
                component.process.stop()
                console.print(f"stopped {component.name}")
        self.state_file.unlink(missing_ok=True)

    def write_state(self) -> None:
        """Record the supervisor and its components for `chakor status` and `chakor down`."""
        state = {
            "supervisor_pid": os.getpid(),
            "components": {
                c.name: {
                    "pid": c.process.pid if c.process else None,
                    "host": c.host,
                    "port": c.port,
                    "started_at": c.started_at,
                    "restarts": c.restarts,
                    "log": str(c.process.log_path) if c.process else None,
                    "health_url": c.process.health_url if c.process else None,
                }
                for c in self.components
            },
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def run_forever(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Start everything, call `on_ready`, then supervise until SIGINT/SIGTERM; always stop the children."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start_all()
            on_ready()
            self.watch()
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        console.print(f"received {signal.Signals(signum).name}: shutting down")
        self.stop_event.set()


def _port_variable(name: str) -> str:
    return {"llama-server": "LLAMA", "database": "DB"}.get(name, name.upper()) + "_PORT"


def read_state(state_file: Path) -> dict | None:
    """The running supervisor's state, or None when no supervisor is running."""
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    return state if pid_alive(state["supervisor_pid"]) else None


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (an exited process its parent has not reaped yet counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
