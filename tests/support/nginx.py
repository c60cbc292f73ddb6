"""Run Debian's nginx with deploy/nginx/chakor.conf on loopback ports, unprivileged, for tests and benchmarks.

The shipped file has a port-80 server (certbot's challenge, redirect to HTTPS) and the HTTPS server with
every location. Here both listen on loopback ports; the HTTPS server uses a self-signed certificate made
with openssl for 127.0.0.1 (`tls=True`), or, for tests of routing and streaming where the transport is
not what is under test, the same server without TLS (`tls=False`: only its `listen` line differs).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from common import REPO_ROOT
from common.process import ManagedProcess, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
DOMAIN = "chakor.example.com"  # the placeholder domain of the shipped config's certificate paths
CERT, KEY = "cert.pem", "key.pem"


def make_certificate(workdir: Path) -> Path:
    """A self-signed P-256 certificate for 127.0.0.1, localhost and DOMAIN (valid 2 days) in `workdir`."""
    cert = workdir / CERT
    if not Path(OPENSSL).exists():
        pytest.fail("openssl is not installed: `apt-get install -y openssl` (it makes the test certificate)")
    if not cert.exists():
        subprocess.run(
            [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", str(workdir / KEY), "-out", str(cert),
             "-addext", f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{DOMAIN}"],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return cert


def client_tls(workdir: Path) -> ssl.SSLContext:
    """A client TLS context that trusts `workdir`'s self-signed certificate (and nothing else)."""
    return ssl.create_default_context(cafile=str(make_certificate(workdir)))


def render_config(
    backend_port: int,
    frontend_port: int,
    listen_port: int,
    workdir: Path,
    tls: bool = False,
    http_port: int | None = None,
    proxy_bind: str | None = None,
) -> Path:
    """The shipped config with these ports, inside a minimal nginx.conf whose files all live in `workdir`.

    `listen_port` is the HTTPS server's (plain HTTP unless `tls`), `http_port` the redirecting one's;
    `proxy_bind` makes nginx connect to the upstreams from that local address (to tell it from a client).
    """
    live = f"/etc/letsencrypt/live/{DOMAIN}"
    cert = make_certificate(workdir)
    site = (REPO_ROOT / "deploy" / "nginx" / "chakor.conf").read_text()
    replacements = {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{backend_port};",
        "server 127.0.0.1:3000;": f"server 127.0.0.1:{frontend_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{listen_port}{' ssl' if tls else ''};",
        "listen 80;": f"listen 127.0.0.1:{http_port or free_port()};",
        f"{live}/fullchain.pem;": f"{cert};",
        f"{live}/privkey.pem;": f"{workdir / KEY};",
        "root /var/www/certbot;": f"root {workdir / 'certbot'};",
    }
    if proxy_bind:
        replacements["proxy_http_version 1.1;"] = f"proxy_http_version 1.1;\n    proxy_bind {proxy_bind};"
    for shipped, local in replacements.items():
        assert site.count(shipped) == 1, f"deploy/nginx/chakor.conf no longer has one {shipped!r}"
        site = site.replace(shipped, local)
    (workdir / "chakor.conf").write_text(site)
    main = workdir / "nginx.conf"
    # Run as root (a container), nginx's workers would drop to `nobody`, who cannot read pytest's 0700
    # folders (the ACME challenge's root): keep them as this user.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main.write_text(
        f"""{user}daemon off;
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
    backend_port: int,
    workdir: Path,
    frontend_port: int | None = None,
    port: int | None = None,
    tls: bool = False,
    http_port: int | None = None,
    proxy_bind: str | None = None,
) -> Iterator[str]:
    """nginx on `port` (default: a free one) in front of the backend on `backend_port` and the frontend on
    `frontend_port` (default: a free port nothing serves); yields its base URL (https:// with `tls`; trust
    it with `client_tls(workdir)`) and stops it afterwards."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: `make setup-test` installs Debian's nginx")
    port = port or free_port()
    config = render_config(
        backend_port, frontend_port or free_port(), port, workdir, tls, http_port, proxy_bind
    )
    subprocess.run([NGINX, "-t", "-c", str(config)], check=True, capture_output=True)
    process = ManagedProcess(
        name="nginx",
        argv=[NGINX, "-c", str(config)],
        log_path=workdir / "nginx.out",
        health_url=None if tls else f"http://127.0.0.1:{port}/healthz",
        health_port=("127.0.0.1", port) if tls else None,
    )
    process.start().wait_healthy(timeout=30)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        process.stop()
