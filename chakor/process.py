"""One managed child process: start with a log file, wait until healthy, stop without orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class ProcessError(RuntimeError):
    """A managed process failed to start or to become healthy."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host`."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """A command run in its own process group, its output appended to `log_path`.

    `health_url` (HTTP 200 means healthy) or `health_port` (accepts TCP) tells when it is ready.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    health_url: str | None = None
    health_port: tuple[str, int] | None = None
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> ManagedProcess:
        """Launch the command (its own session, so stopping it takes its children too)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def healthy(self) -> bool:
        """One health probe."""
        if not self.alive():
            return False
        if self.health_url:
            try:
                return httpx.get(self.health_url, timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False
        if self.health_port:
            return port_in_use(*self.health_port)
        return True

    def wait_healthy(self, timeout: float = 60.0) -> ManagedProcess:
        """Block until healthy; on timeout or early exit raise with the log's last lines."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return self
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                raise ProcessError(
                    f"{self.name} exited with code {code} before it was healthy; last log lines "
                    f"({self.log_path}):\n{tail(self.log_path)}"
                )
            time.sleep(0.2)
        raise ProcessError(
            f"{self.name} was not healthy after {timeout:.0f}s; last log lines ({self.log_path}):\n"
            f"{tail(self.log_path)}"
        )

    def kill(self) -> None:
        """SIGKILL the whole process group at once (fault injection)."""
        self._signal_group(signal.SIGKILL)
        if self.popen:
            self.popen.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
        if not self.popen or self.popen.poll() is not None:
            self._signal_group(signal.SIGKILL)  # reap stray children of an exited leader
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.popen.wait()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)
