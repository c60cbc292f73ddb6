"""Threads and GPU offload for the llama.cpp tools that verify and evaluate a model."""

from __future__ import annotations

import stat
from pathlib import Path

from common.llama_cpp import gpu_devices, llama_server_binary, offload_args, physical_cores
from converter.llama_tools import tool_threads

# What `llama-server --list-devices` prints in a CUDA build (llama.cpp's common/arg.cpp format).
CUDA_LISTING = """\
Available devices:
  CUDA0: NVIDIA H100 80GB HBM3 (81079 MiB, 80548 MiB free)
"""


def test_threads_grow_with_the_model() -> None:
    assert tool_threads(1_300_000, threads=2) == 1  # tiny: one thread beats two on a busy machine
    assert tool_threads(124_000_000, threads=2) == 2  # CHAKOR_LLAMA_THREADS
    assert tool_threads(6_738_415_616, threads=2) == max(2, physical_cores())  # 7b: every core
    assert tool_threads(6_738_415_616, threads=64) == 64  # never fewer than configured


def test_this_cpu_build_offloads_nothing() -> None:
    server = llama_server_binary()
    assert gpu_devices(server) == ()  # it prints "(none)"
    assert offload_args(server) == []


def test_a_build_that_lists_a_gpu_gets_every_layer_offloaded(tmp_path: Path) -> None:
    listing = tmp_path / "CUDA_LISTING"
    listing.write_text(CUDA_LISTING)
    server = tmp_path / "llama-server"  # stands in for a CUDA build's binary: prints its device list
    server.write_text(f'#!/bin/sh\n[ "$1" = --list-devices ] && cat "{listing}"\n')
    server.chmod(server.stat().st_mode | stat.S_IEXEC)
    assert gpu_devices(server) == ("CUDA0: NVIDIA H100 80GB HBM3 (81079 MiB, 80548 MiB free)",)
    assert offload_args(server) == ["-ngl", "99"]
