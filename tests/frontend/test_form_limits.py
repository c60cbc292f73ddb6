"""The web app's form endpoints stop reading a body at their limit and answer 413: a client cannot
make them hold (or wait for) an 8 MB upload."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from tests.frontend.conftest import Stack

pytestmark = [pytest.mark.slow]
MAX_FORM_BYTES = 4096  # chakor_web.server's limit (the web app's code is not imported by tests)
DECLARED = 8_000_000


def _post(stack: Stack, path: str, head: bytes, sent: int, chunked: bool) -> bytes:
    """POST to the web app, sending only `sent` bytes of an 8 MB body; what it answers before the rest."""
    parts = urlsplit(stack.app_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {DECLARED}\r\n".encode()
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nOrigin: {stack.app_url}\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + framing
            + b"\r\n"
        )
        body = head + b"a" * (sent - len(head))
        conn.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n" if chunked else body)
        return _answer(conn)


def _answer(conn: socket.socket) -> bytes:
    """The response: its head and a Content-Length body (the rest of the upload never sent)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("path", ["/_chakor/login", "/_chakor/register"])
def test_a_declared_8mb_form_is_refused_before_it_is_read(stack: Stack, path: str) -> None:
    answer = _post(stack, path, b"email=a%40b.test&password=", 1024, chunked=False)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_an_undeclared_form_is_cut_at_its_limit(stack: Stack) -> None:
    answer = _post(stack, "/_chakor/login", b"email=a%40b.test&password=", MAX_FORM_BYTES * 4, chunked=True)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert answer.rstrip().endswith(f"form larger than {MAX_FORM_BYTES} bytes".encode())
