"""An in-process sliding-window limiter (login attempts per e-mail and per client address)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable

from backend.core.errors import RateLimitedError


class SlidingWindowLimiter:
    """Allow at most `max_events` recorded events per key within `window_seconds`."""

    def __init__(
        self, max_events: int, window_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_events = max_events
        self.window_seconds = window_seconds
        self._clock = clock
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def _prune(self, key: str) -> deque[float]:
        events = self._events[key]
        horizon = self._clock() - self.window_seconds
        while events and events[0] <= horizon:
            events.popleft()
        if not events:
            del self._events[key]
            return deque()
        return events

    def check(self, key: str) -> None:
        """Raise RateLimitedError when `key` has used up its window."""
        events = self._prune(key)
        if len(events) >= self.max_events:
            retry = max(1, round(events[0] + self.window_seconds - self._clock()))
            raise RateLimitedError(f"too many login attempts; try again in {retry} s")

    def record(self, key: str) -> None:
        """Count one event (a failed attempt) against `key`."""
        self._prune(key)
        self._events[key].append(self._clock())

    def reset(self, key: str) -> None:
        """Forget `key` (after a successful login)."""
        self._events.pop(key, None)
