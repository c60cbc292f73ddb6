"""CPU-heavy work (argon2, prompt tokenization) on a small thread pool, off the event loop.

argon2-cffi and tokenizers release the GIL while they work, so a burst of logins runs beside the
streams instead of stalling them. The pool's size bounds the concurrency: with argon2's 64 MiB per
hash, CPU_WORKERS hashes at once cap its memory; further calls queue.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

CPU_WORKERS = max(1, min(4, os.cpu_count() or 1))
_pool = ThreadPoolExecutor(max_workers=CPU_WORKERS, thread_name_prefix="chakor-cpu")
# Prompts have a pool of their own: a burst of logins must not queue a chat's tokenization.
_prompt_pool = ThreadPoolExecutor(max_workers=CPU_WORKERS, thread_name_prefix="chakor-prompt")

P = ParamSpec("P")
T = TypeVar("T")


async def run_cpu(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` on the CPU pool; the caller's task waits without blocking the loop."""
    return await asyncio.get_running_loop().run_in_executor(_pool, partial(fn, *args, **kwargs))


async def run_prompt(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` (prompt rendering and tokenization) on the prompt pool."""
    return await asyncio.get_running_loop().run_in_executor(_prompt_pool, partial(fn, *args, **kwargs))
