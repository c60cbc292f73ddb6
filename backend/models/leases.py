"""State that several backends share through the database: answers in progress and failed logins.

Both expire by themselves (TTL indexes on `expires_at`), so a backend that dies leaves nothing that
outlives its lease.
"""

from __future__ import annotations

from datetime import datetime

import pymongo
from beanie import Document, PydanticObjectId


class StreamLease(Document):
    """One answer slot in use: who, on which backend, and whether someone asked it to stop.

    `id` is `<user_id>:<slot>` (slot 0 up to the per-user limit), so the unique `_id` enforces the
    limit. `message_id` is the answer's id (made before the answer is stored); `key_id` the API key
    that started it (None: a signed-in session), so revoking the key stops it; the owning backend
    renews `expires_at` while it streams. `stop_reason` is set when the answer is stopped because
    its credentials were revoked (the client then gets that error, not a plain stop).
    """

    id: str | None = None  # type: ignore[assignment]
    user_id: PydanticObjectId
    backend_id: str
    message_id: PydanticObjectId | None = None
    key_id: PydanticObjectId | None = None
    stop: bool = False
    stop_reason: str | None = None
    expires_at: datetime

    class Settings:
        name = "stream_leases"
        indexes = [
            pymongo.IndexModel([("user_id", pymongo.ASCENDING)]),
            pymongo.IndexModel([("message_id", pymongo.ASCENDING)]),
            pymongo.IndexModel([("backend_id", pymongo.ASCENDING)]),
            pymongo.IndexModel([("key_id", pymongo.ASCENDING)]),
            pymongo.IndexModel([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0),
        ]


class LoginFailure(Document):
    """One failed login, counted against its key (`email:...` or `client:...`) within the window."""

    key: str
    at: datetime
    expires_at: datetime

    class Settings:
        name = "login_failures"
        indexes = [
            pymongo.IndexModel([("key", pymongo.ASCENDING), ("at", pymongo.ASCENDING)]),
            pymongo.IndexModel([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0),
        ]
