"""The answers being generated right now, shared by every backend through the database.

Each answer holds a `StreamLease` on one of its user's slots: a document per slot, so claiming one is
a single insert whose unique `_id` is the per-user limit (on any backend). `stopGeneration` sets the
lease's stop flag, which the owning backend notices within WATCH_SECONDS (at once when the answer
runs on the backend that was asked). A backend renews its leases while it lives; one that dies
leaves leases that expire after LEASE_SECONDS, and their answers are then marked `interrupted` (at
once by its successor on the same address, which knows its predecessor died). A sweep every
SWEEP_SECONDS also ends answers left `streaming` without a lease (their final save failed), so
none stays `streaming` for more than LEASE_SECONDS + SWEEP_SECONDS.

An answer stopped because its credentials died (password changed, session or API key revoked)
carries the reason, and its client gets that error instead of a plain stop.
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
SWEEP_SECONDS = 15.0  # how often every backend sweeps for answers left streaming: 45 s at most in all
INTERRUPTED = "the server stopped while this answer was being generated"
UNFINISHED = "this answer could not be saved completely; the text so far is kept"
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
    key_id: PydanticObjectId | None = None  # the API key that started it; None: a signed-in session
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None  # why it was stopped, when its credentials were revoked

    def halt(self, reason: str | None = None) -> None:
        """Ask the answer to stop (`reason`: its credentials died, said to the client)."""
        self.reason = self.reason or reason
        self.stop.set()


class StreamRegistry:
    """Leases of this backend (`backend_id`) and its active streams, with a per-user limit."""

    def __init__(self, max_per_user: int, backend_id: str) -> None:
        self.max_per_user = max_per_user
        self.backend_id = backend_id
        self._streams: dict[PydanticObjectId, ActiveStream] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._streams)

    def _expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=LEASE_SECONDS)

    async def reserve(
        self, user_id: PydanticObjectId, message_id: PydanticObjectId, key_id: PydanticObjectId | None = None
    ) -> StreamSlot:
        """Claim a free slot of the user's for the answer `message_id` (its id is made before the answer
        is stored, so a stop from any backend finds the lease), started with API key `key_id` if any;
        RateLimitedError when all are taken on all backends.

        A free slot is one without a lease (one insert: the common case) or with an expired one, left by
        a backend that stopped renewing; taking that over is one conditional update, which only one
        claimant can win.
        """
        collection = StreamLease.get_pymongo_collection()
        lease = StreamLease(
            user_id=user_id,
            backend_id=self.backend_id,
            message_id=message_id,
            key_id=key_id,
            expires_at=self._expiry(),
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
            local.halt()
            return True
        flagged = await StreamLease.get_pymongo_collection().update_one(
            {"message_id": message_id, "user_id": user_id, "expires_at": {"$gt": utcnow()}},
            {"$set": {"stop": True}},
        )
        return flagged.matched_count == 1

    async def stop_user(
        self, user_id: PydanticObjectId, reason: str | None = None, sessions_only: bool = False
    ) -> None:
        """Stop every answer of `user_id` on every backend (`sessions_only`: those not started with an
        API key); `reason` is the error their clients get (None: a plain stop).

        The one call that ends a user's running answers: a disabled or deleted account, a password
        change, a revoked session.
        """
        for stream in list(self._streams.values()):
            if stream.user_id == user_id and not (sessions_only and stream.key_id is not None):
                stream.halt(reason)
        match: dict[str, object] = {"user_id": user_id}
        if sessions_only:
            match["key_id"] = None
        await self._flag(match, reason)

    async def stop_keys(self, key_ids: list[PydanticObjectId], reason: str) -> None:
        """Stop every answer that the API keys `key_ids` started, on every backend, with `reason`."""
        for stream in list(self._streams.values()):
            if stream.key_id is not None and stream.key_id in key_ids:
                stream.halt(reason)
        await self._flag({"key_id": {"$in": key_ids}}, reason)

    async def _flag(self, match: dict[str, object], reason: str | None) -> None:
        await StreamLease.get_pymongo_collection().update_many(
            match, {"$set": {"stop": True, "stop_reason": reason}}
        )

    async def _watch(self) -> None:
        """While answers stream here: pass on stop flags and renew leases."""
        renewed = asyncio.get_running_loop().time()
        collection = StreamLease.get_pymongo_collection()
        while self._streams:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                flagged = collection.find(
                    {"backend_id": self.backend_id, "stop": True}, {"message_id": 1, "stop_reason": 1}
                )
                async for lease in flagged:
                    stream = self._streams.get(lease.get("message_id"))
                    if stream is not None:
                        stream.halt(lease.get("stop_reason"))
                now = asyncio.get_running_loop().time()
                if now - renewed >= RENEW_SECONDS:
                    renewed = now
                    await collection.update_many(
                        {"backend_id": self.backend_id}, {"$set": {"expires_at": self._expiry()}}
                    )
            except Exception:  # the database is away for a moment: keep streaming, try again
                log.warning("stream lease upkeep failed", exc_info=True)

    def start_sweeper(self) -> None:
        """Sweep every SWEEP_SECONDS, for as long as the app runs (see `recover`)."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.recover(predecessor=False)
            except Exception:  # the database is away: the next sweep tries again
                log.warning("sweep of unfinished answers failed", exc_info=True)

    async def recover(self, predecessor: bool = True) -> int:
        """Mark answers whose backend died, and answers left `streaming` without a lease, as
        `interrupted` (their text so far stays); how many.

        Dead: leases that expired, and (`predecessor`, at start-up) every lease of this backend id,
        which only a previous process on this address can hold. Unfinished: `streaming`, older than
        LEASE_SECONDS and no lease names it (its final save failed, or its backend died before it
        took a lease).
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
        messages = Message.get_pymongo_collection()
        modified = 0
        for match, error in ((stale, INTERRUPTED), (orphan, UNFINISHED)):
            result = await messages.update_many(
                match, {"$set": {"status": MessageStatus.INTERRUPTED.value, "error": error}}
            )
            modified += result.modified_count
        if modified:
            log.warning("marked %d unfinished answers as interrupted", modified)
        return modified

    async def close(self) -> None:
        """Stop the upkeep tasks (the app is shutting down)."""
        for task in (self._watcher, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
