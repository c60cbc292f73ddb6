"""A sliding-window limiter kept in the database, so every backend counts the same attempts.

An attempt is counted before the work it guards (insert, then count the ones up to it): of any
number of concurrent attempts at most `max_events` get through, with no check-then-record gap.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from backend.core.errors import RateLimitedError
from backend.models import LoginFailure
from backend.models.common import utcnow


class WindowLimiter:
    """Allow at most `max_events` counted attempts per key within `window_seconds`.

    Each attempt is a document `{key, at, expires_at}` (TTL-indexed: the database drops it after the
    window); `collection` defaults to the `login_failures` documents. `what` names the attempts in
    the refusal ("too many login attempts; try again in 12 s").
    """

    def __init__(
        self,
        prefix: str,
        max_events: int,
        window_seconds: float,
        collection: AsyncCollection[Any] | None = None,
        clock: Callable[[], datetime] = utcnow,
        what: str = "login attempts",
    ) -> None:
        self.prefix = prefix
        self.max_events = max_events
        self.window = timedelta(seconds=window_seconds)
        self._collection = collection
        self._clock = clock
        self.what = what

    @property
    def collection(self) -> AsyncCollection[Any]:
        if self._collection is None:
            self._collection = LoginFailure.get_pymongo_collection()
        return self._collection

    async def attempt(self, key: str) -> ObjectId:
        """Count one attempt against `key` and return its id; RateLimitedError (counting nothing)
        when the window already holds `max_events` attempts before it.

        Each attempt is stored first, then counts the attempts up to itself, ordered by time and then
        id: of concurrent attempts the first `max_events` pass and every later one sees them. A refused
        attempt takes its document back, so hammering a limited key does not extend its window.
        """
        clock = self._clock()
        now = clock.replace(microsecond=clock.microsecond // 1000 * 1000)  # BSON dates hold milliseconds
        full_key, attempt = self.prefix + key, ObjectId()
        document = {"_id": attempt, "key": full_key, "at": now, "expires_at": now + self.window}
        await self.collection.insert_one(document)
        recent = {"key": full_key, "at": {"$gt": now - self.window}}
        # attempts before this one in the order (time, then id for the same millisecond): every
        # backend sees the same order, so the first `max_events` pass wherever they ran
        before = {"$or": [{"at": {"$lt": now}}, {"at": now, "_id": {"$lte": attempt}}]}
        if await self.collection.count_documents({**recent, **before}) <= self.max_events:
            return attempt
        await self.forget(attempt)
        oldest = await self.collection.find_one(recent, sort=[("at", 1)])
        left = (oldest["at"] + self.window - now).total_seconds() if oldest else self.window.total_seconds()
        raise RateLimitedError(f"too many {self.what}; try again in {max(1, round(left))} s")

    async def forget(self, attempt: ObjectId) -> None:
        """Take back one counted attempt (it succeeded: only failures stay counted)."""
        await self.collection.delete_one({"_id": attempt})
