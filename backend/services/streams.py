"""The answers being generated right now, so they can be stopped and counted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from beanie import PydanticObjectId

from backend.core.errors import RateLimitedError


@dataclass
class ActiveStream:
    """One answer in progress."""

    message_id: PydanticObjectId
    user_id: PydanticObjectId
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class StreamRegistry:
    """Active streams by message id, with a per-user limit."""

    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self._streams: dict[PydanticObjectId, ActiveStream] = {}
        self._reserved: dict[PydanticObjectId, int] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def reserve(self, user_id: PydanticObjectId) -> None:
        """Claim one of the user's stream slots; RateLimitedError when all are taken."""
        if self._reserved.get(user_id, 0) >= self.max_per_user:
            raise RateLimitedError(
                f"too many answers in progress (at most {self.max_per_user} per user); wait or stop one"
            )
        self._reserved[user_id] = self._reserved.get(user_id, 0) + 1

    def release(self, user_id: PydanticObjectId) -> None:
        """Give a slot back."""
        left = self._reserved.get(user_id, 0) - 1
        if left > 0:
            self._reserved[user_id] = left
        else:
            self._reserved.pop(user_id, None)

    def add(self, stream: ActiveStream) -> None:
        """Register an answer as streaming."""
        self._streams[stream.message_id] = stream

    def remove(self, message_id: PydanticObjectId) -> None:
        """Forget a finished answer."""
        self._streams.pop(message_id, None)

    async def stop(self, message_id: PydanticObjectId, user_id: PydanticObjectId) -> bool:
        """Ask the user's own streaming answer to stop; False when there is none."""
        stream = self._streams.get(message_id)
        if stream is None or stream.user_id != user_id:
            return False
        stream.stop.set()
        return True

    async def stop_user(self, user_id: PydanticObjectId) -> None:
        """Stop every answer of `user_id` (a disabled account)."""
        for stream in self._streams.values():
            if stream.user_id == user_id:
                stream.stop.set()
