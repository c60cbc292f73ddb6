"""Server-side sessions: a signed-in browser's tokens, found by an HttpOnly, SameSite cookie.

The page never sees a token: the cookie holds a random session id (HttpOnly, so page scripts cannot
read it), this store maps its SHA-256 to the tokens. Every tab of the browser shares one session, so
a refresh by one tab is seen by the others (two copies of a rotating refresh token would trip the
backend's reuse detection). SQLite under the var folder: sessions outlive a restart of the app.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from http.cookies import CookieError, SimpleCookie
from typing import Any

from common.settings import get_settings

COOKIE = "chakor_session"
# The cookie's name over TLS: browsers keep a `__Host-` cookie only when it is Secure, for this host
# alone and for path `/`, so neither a sibling domain nor a plain-HTTP answer can set or shadow it.
SECURE_COOKIE = "__Host-chakor_session"
FLASH_SECONDS = 60  # a login error waits this long for the page it redirects to


@dataclass
class Session:
    """What the app holds for a signed-in browser."""

    access_token: str
    refresh_token: str
    user: dict[str, Any]


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionStore:
    """Sessions and one-time login messages in one SQLite file (thread-safe; calls take microseconds)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, access TEXT, refresh TEXT,"
                " user TEXT, expires REAL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS flash (key TEXT PRIMARY KEY, text TEXT, expires REAL)"
            )

    def create(self, access: str, refresh: str, user: dict[str, Any], days: int) -> str:
        """A new session; returns the id for the cookie."""
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (_key(session_id), access, refresh, json.dumps(user), now + days * 86400),
            )
        return session_id

    def get(self, session_id: str) -> Session | None:
        """The live session with this id, or None."""
        if not session_id:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT access, refresh, user FROM sessions WHERE key = ? AND expires >= ?",
                (_key(session_id), time.time()),
            ).fetchone()
        return Session(row[0], row[1], json.loads(row[2])) if row else None

    def update(self, session_id: str, access: str, refresh: str, user: dict[str, Any]) -> None:
        """Store rotated tokens."""
        with self._lock:
            self._db.execute(
                "UPDATE sessions SET access = ?, refresh = ?, user = ? WHERE key = ?",
                (access, refresh, json.dumps(user), _key(session_id)),
            )

    def delete(self, session_id: str) -> None:
        """End a session (logout, or its refresh token stopped working)."""
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE key = ?", (_key(session_id),))

    def flash(self, text: str) -> str:
        """Keep a message for the next page; returns its one-time id."""
        flash_id = secrets.token_urlsafe(12)
        with self._lock:
            now = time.time()
            self._db.execute("DELETE FROM flash WHERE expires < ?", (now,))
            self._db.execute("INSERT INTO flash VALUES (?, ?, ?)", (flash_id, text, now + FLASH_SECONDS))
        return flash_id

    def take_flash(self, flash_id: str) -> str:
        """The message with this id, once; '' when unknown or expired."""
        with self._lock:
            row = self._db.execute(
                "SELECT text FROM flash WHERE key = ? AND expires >= ?", (flash_id, time.time())
            ).fetchone()
            self._db.execute("DELETE FROM flash WHERE key = ?", (flash_id,))
        return row[0] if row else ""


@lru_cache(maxsize=1)
def store() -> SessionStore:
    """The process's store, at `<var>/frontend/sessions.sqlite3`."""
    folder = get_settings().var_dir / "frontend"
    folder.mkdir(parents=True, exist_ok=True)
    return SessionStore(str(folder / "sessions.sqlite3"))


def session_id_from(cookie_header: str) -> str:
    """The session id in a `Cookie:` header (the `__Host-` cookie first); '' when there is none."""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header or "")
    except CookieError:  # a malformed header from the client: no session
        return ""
    morsel = cookies.get(SECURE_COOKIE) or cookies.get(COOKIE)
    return morsel.value if morsel else ""
