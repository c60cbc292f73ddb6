"""Run Debian's nginx with deploy/nginx/chakor.conf on loopback ports, unprivileged, for tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from common import REPO_ROOT
from common.process import ManagedProcess, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render_config(backend_port: int, frontend_port: int, listen_port: int, workdir: Path) -> Path:
    """The shipped config with these ports, inside a minimal nginx.conf whose files all live in `workdir`."""
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
events {{ worker_connections 1024; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    include {workdir}/chakor.conf;
}}
"""
    )
    return main


@contextmanager
def running_nginx(
    backend_port: int, workdir: Path, frontend_port: int | None = None, port: int | None = None
) -> Iterator[str]:
    """nginx on `port` (default: a free one) in front of the backend on `backend_port` and the frontend on
    `frontend_port` (default: a free port nothing serves); yields its base URL and stops it afterwards."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: `make setup-test` installs Debian's nginx")
    port = port or free_port()
    config = render_config(backend_port, frontend_port or free_port(), port, workdir)
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
