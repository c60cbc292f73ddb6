"""Counts of actions per user per time window (imports per hour), expired by a TTL index."""

from __future__ import annotations

from datetime import datetime

import pymongo
from beanie import Document, PydanticObjectId


class WindowCounter(Document):
    """How often `user_id` did one thing in one window; `id` is `<action>:<user_id>:<window>`, so the
    counter is one document that a single `$inc` moves."""

    id: str | None = None  # type: ignore[assignment]
    user_id: PydanticObjectId
    used: int = 0
    expires_at: datetime

    class Settings:
        name = "window_counters"
        indexes = [
            pymongo.IndexModel([("user_id", pymongo.ASCENDING)]),
            pymongo.IndexModel([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0),
        ]
