"""The answers being generated right now, shared by every backend through the database.

Each answer holds a `StreamLease` on one of its user's slots: a document per slot, so claiming one is
a single insert whose unique `_id` is the per-user limit (on any backend). `stopGeneration` sets the
lease's stop flag, which the owning backend notices within WATCH_SECONDS (at once when the answer
runs on the backend that was asked). A backend renews its leases while it lives; one that dies
leaves leases that expire after LEASE_SECONDS, and their answers are then marked `interrupted` (at
once by its successor on the same address, which knows its predecessor died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from backend.core.errors import RateLimitedError
from backend.models import Message, MessageStatus, StreamLease
from backend.models.common import utcnow

LEASE_SECONDS = 30.0  # how long a dead backend's answers count against their users
RENEW_SECONDS = 10.0  # leases are renewed this often, well inside LEASE_SECONDS
WATCH_SECONDS = 0.25  # how often a backend with answers in progress reads its stop flags
INTERRUPTED = "the server stopped while this answer was being generated"
log = logging.getLogger("chakor.backend")


@dataclass(frozen=True)
class StreamSlot:
    """A claimed slot: its lease's `_id` and the answer holding it."""

    key: str
    message_id: PydanticObjectId


@dataclass
class ActiveStream:
    """One answer in progress on this backend."""

    message_id: PydanticObjectId
    user_id: PydanticObjectId
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class StreamRegistry:
    """Leases of this backend (`backend_id`) and its active streams, with a per-user limit."""

    def __init__(self, max_per_user: int, backend_id: str) -> None:
        self.max_per_user = max_per_user
        self.backend_id = backend_id
        self._streams: dict[PydanticObjectId, ActiveStream] = {}
        self._watcher: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._streams)

    def _expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=LEASE_SECONDS)

    async def reserve(self, user_id: PydanticObjectId, message_id: PydanticObjectId) -> StreamSlot:
        """Claim a free slot of the user's for the answer `message_id` (its id is made before the answer
        is stored, so a stop from any backend finds the lease); RateLimitedError when all are taken on
        all backends.

        A free slot is one without a lease (one insert: the common case) or with an expired one, left by
        a backend that stopped renewing; taking that over is one conditional update, which only one
        claimant can win.
        """
        collection = StreamLease.get_pymongo_collection()
        lease = StreamLease(
            user_id=user_id, backend_id=self.backend_id, message_id=message_id, expires_at=self._expiry()
        ).model_dump(exclude={"id"})
        for slot in range(self.max_per_user):
            key = f"{user_id}:{slot}"
            try:
                await collection.insert_one({"_id": key, **lease})
                return StreamSlot(key, message_id)
            except DuplicateKeyError:
                expired = {"_id": key, "expires_at": {"$lte": utcnow()}}
                if (await collection.update_one(expired, {"$set": lease})).matched_count:
                    return StreamSlot(key, message_id)
        raise RateLimitedError(
            f"too many answers in progress (at most {self.max_per_user} per user); wait or stop one"
        )

    async def release(self, slot: StreamSlot) -> None:
        """Give a slot back unless another answer took it over meanwhile (finishes even while the
        caller is being cancelled)."""
        collection = StreamLease.get_pymongo_collection()
        await asyncio.shield(collection.delete_one({"_id": slot.key, "message_id": slot.message_id}))

    def add(self, stream: ActiveStream) -> None:
        """Register an answer as streaming here (its lease names it already)."""
        self._streams[stream.message_id] = stream
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch())

    def remove(self, message_id: PydanticObjectId) -> None:
        """Forget a finished answer (its lease goes with `release`)."""
        self._streams.pop(message_id, None)

    async def stop(self, message_id: PydanticObjectId, user_id: PydanticObjectId) -> bool:
        """Ask the user's own streaming answer, on whichever backend, to stop; False when there is none."""
        local = self._streams.get(message_id)
        if local is not None and local.user_id == user_id:
            local.stop.set()
            return True
        flagged = await StreamLease.get_pymongo_collection().update_one(
            {"message_id": message_id, "user_id": user_id, "expires_at": {"$gt": utcnow()}},
            {"$set": {"stop": True}},
        )
        return flagged.matched_count == 1

    async def stop_user(self, user_id: PydanticObjectId) -> None:
        """Stop every answer of `user_id` on every backend (a disabled account)."""
        for stream in self._streams.values():
            if stream.user_id == user_id:
                stream.stop.set()
        await StreamLease.get_pymongo_collection().update_many({"user_id": user_id}, {"$set": {"stop": True}})

    async def _watch(self) -> None:
        """While answers stream here: pass on stop flags, renew leases, sweep dead backends' answers."""
        renewed = swept = asyncio.get_running_loop().time()
        collection = StreamLease.get_pymongo_collection()
        while self._streams:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                flagged = collection.find({"backend_id": self.backend_id, "stop": True}, {"message_id": 1})
                async for lease in flagged:
                    stream = self._streams.get(lease.get("message_id"))
                    if stream is not None:
                        stream.stop.set()
                now = asyncio.get_running_loop().time()
                if now - renewed >= RENEW_SECONDS:
                    renewed = now
                    await collection.update_many(
                        {"backend_id": self.backend_id}, {"$set": {"expires_at": self._expiry()}}
                    )
                if now - swept >= LEASE_SECONDS:
                    swept = now
                    await self.recover(predecessor=False)
            except Exception:  # the database is away for a moment: keep streaming, try again
                log.warning("stream lease upkeep failed", exc_info=True)

    async def recover(self, predecessor: bool = True) -> int:
        """Mark answers whose backend died as `interrupted` (their text so far stays); how many.

        Dead: leases that expired, and (`predecessor`, at start-up) every lease of this backend id,
        which only a previous process on this address can hold.
        """
        now = utcnow()
        dead: dict[str, object] = {"expires_at": {"$lte": now}}
        if predecessor:
            dead = {"$or": [dead, {"backend_id": self.backend_id}]}
        collection = StreamLease.get_pymongo_collection()
        ids = [lease["message_id"] async for lease in collection.find(dead, {"message_id": 1})]
        await collection.delete_many(dead)
        live = [lease["message_id"] async for lease in collection.find({}, {"message_id": 1})]
        orphan = {
            "status": MessageStatus.STREAMING.value,
            "created_at": {"$lt": now - timedelta(seconds=LEASE_SECONDS)},
            "_id": {"$nin": [i for i in live if i is not None]},
        }
        stale = {"status": MessageStatus.STREAMING.value, "_id": {"$in": [i for i in ids if i is not None]}}
        result = await Message.get_pymongo_collection().update_many(
            {"$or": [stale, orphan]},
            {"$set": {"status": MessageStatus.INTERRUPTED.value, "error": INTERRUPTED}},
        )
        if result.modified_count:
            log.warning("marked %d answers of stopped backends as interrupted", result.modified_count)
        return result.modified_count

    async def close(self) -> None:
        """Stop the upkeep task (the app is shutting down)."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
