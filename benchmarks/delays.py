"""Per-token delays: when llama-server's stream forwarded each token vs when the client received it.

The backend merges tokens that queue up into one `ChatToken`, so gaps between a client's chunks say
nothing about single tokens. Instead each token of llama-server's stream (recorded by
tests/support/capture_llama.py) is matched to the client chunk that completed it, by text offsets.
"""

from __future__ import annotations

import bisect
import itertools

from tests.reliability.client import Stream
from tests.support.capture_llama import Completion


class StreamMismatch(AssertionError):
    """The client did not receive exactly the text llama-server generated."""


def chunk_delays(stream: Stream, completion: Completion) -> list[float]:
    """Seconds from each token leaving llama-server to the client holding it (one entry per token event)."""
    if stream.text != completion.text:
        raise StreamMismatch(f"client got {stream.text[:80]!r}, llama-server wrote {completion.text[:80]!r}")
    chunk_ends = list(itertools.accumulate(len(c) for c in stream.chunks))
    delays = []
    for end, forwarded in zip(
        itertools.accumulate(len(c) for c in completion.contents), completion.times, strict=True
    ):
        chunk = bisect.bisect_left(chunk_ends, end)  # the first chunk that reaches this token's last char
        delays.append(stream.chunk_times[chunk] - forwarded)
    return delays
