"""A sliding-window limiter kept in the database, so every backend counts the same login failures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from backend.core.errors import RateLimitedError
from backend.models import LoginFailure
from backend.models.common import utcnow


class WindowLimiter:
    """Allow at most `max_events` recorded events per key within `window_seconds`.

    Each event is a document `{key, at, expires_at}` (TTL-indexed: the database drops it after the
    window); `collection` defaults to the `login_failures` documents.
    """

    def __init__(
        self,
        prefix: str,
        max_events: int,
        window_seconds: float,
        collection: AsyncCollection[Any] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.prefix = prefix
        self.max_events = max_events
        self.window = timedelta(seconds=window_seconds)
        self._collection = collection
        self._clock = clock

    @property
    def collection(self) -> AsyncCollection[Any]:
        if self._collection is None:
            self._collection = LoginFailure.get_pymongo_collection()
        return self._collection

    async def check(self, key: str) -> None:
        """Raise RateLimitedError when `key` has used up its window."""
        now = self._clock()
        recent = self.collection.find({"key": self.prefix + key, "at": {"$gt": now - self.window}})
        times = sorted([event["at"] async for event in recent.sort("at", 1).limit(self.max_events)])
        if len(times) >= self.max_events:
            retry = max(1, round((times[0] + self.window - now).total_seconds()))
            raise RateLimitedError(f"too many login attempts; try again in {retry} s")

    async def record(self, key: str) -> None:
        """Count one event (a failed attempt) against `key`."""
        now = self._clock()
        await self.collection.insert_one(
            {"key": self.prefix + key, "at": now, "expires_at": now + self.window}
        )

    async def reset(self, key: str) -> None:
        """Forget `key` (after a successful login)."""
        await self.collection.delete_many({"key": self.prefix + key})
