"""One managed child process: start with a log file, wait until healthy, stop without orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx


class ProcessError(RuntimeError):
    """A managed process failed to start or to become healthy."""


# Ports handed out by free_port(), each still bound here until the child that serves it is healthy.
_held: dict[int, socket.socket] = {}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing else can take until `release_port` (or a healthy child) frees it.

    The port stays bound in this process but never listens, with SO_REUSEADDR and SO_REUSEPORT: the kernel
    then gives it to no one else (not to another `free_port`, nor as an outgoing connection's source port),
    while a server child (they all set SO_REUSEADDR: uvicorn, granian, llama-server, nginx, asyncio) can
    still bind and listen on it. Closing a plain probe socket instead leaves a window for others to grab it.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    port = int(sock.getsockname()[1])
    _held[port] = sock
    return port


def release_port(port: int) -> None:
    """Stop holding a port from `free_port` (no-op for any other port)."""
    sock = _held.pop(port, None)
    if sock is not None:
        sock.close()


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    if not path.exists():
        return ""
    with path.open(errors="replace") as handle:  # streamed: a log of any size costs `lines` lines of memory
        return "".join(deque(handle, maxlen=lines)).rstrip("\n")


@dataclass
class ManagedProcess:
    """A command run in its own process group, its output appended to `log_path`.

    `health_url` (HTTP 200 means healthy) or `health_port` (accepts TCP) tells when it is ready.
    The child gets this process's environment (only the variables `inherit` accepts, when given) plus `env`.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    health_url: str | None = None
    health_port: tuple[str, int] | None = None
    inherit: Callable[[str], bool] | None = None
    popen: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int | None:
        """The port the health check probes (the one the child serves on), if any."""
        if self.health_port:
            return self.health_port[1]
        if self.health_url:
            return urlsplit(self.health_url).port
        return None

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
                env={**self.inherited_env(), **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def inherited_env(self) -> dict[str, str]:
        """The variables of this process that the child inherits."""
        return {k: v for k, v in os.environ.items() if self.inherit is None or self.inherit(k)}

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
                if self.port is not None:
                    release_port(self.port)  # the child listens on it now
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
