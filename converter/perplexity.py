"""Run llama.cpp's `llama-perplexity` on a text and read its result."""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from pathlib import Path

from converter.errors import ConversionError
from converter.llama_tools import NO_REPACK, gpu_offload, llama_tool

# with --ppl-output-type 1 every chunk prints: token offset, perplexity, mean NLL so far, its std error
_CHUNK_LINE = re.compile(r"^\s*(\d+)\s+[\d.]+\s+([\d.]+)\s+[\d.eE+-]+\s*$", re.MULTILINE)
ATTEMPTS = 5


def llama_perplexity(
    model: Path, text: str, n_ctx: int, n_chunks: int, threads: int = 2, server_bin: Path | None = None
) -> float:
    """Perplexity of `model` on `text` over its first `n_chunks` windows of `n_ctx` tokens.

    f32 KV cache and no flash attention (see llama_server). llama.cpp's logger prints from its own
    thread and loses the lines still queued when the tool exits, so the tool evaluates one spare
    window (`text` must hold n_chunks + 1 windows) while the line we read is flushed, and a run
    whose line is missing anyway is repeated.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        argv = [
            str(llama_tool("llama-perplexity", server_bin)), "-m", str(model), "-f", f.name,
            "-c", str(n_ctx), "-b", str(n_ctx), "--chunks", str(n_chunks + 1), "-t", str(threads),
            "-ctk", "f32", "-ctv", "f32", "-fa", "off", "--ppl-output-type", "1", NO_REPACK, *gpu_offload(server_bin),
        ]  # fmt: skip
        for _ in range(ATTEMPTS):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            output = done.stdout + done.stderr
            cumulative = dict(_CHUNK_LINE.findall(output))  # token offset -> mean NLL of the chunks so far
            if done.returncode == 0 and str((n_chunks - 1) * n_ctx) in cumulative:
                return math.exp(float(cumulative[str((n_chunks - 1) * n_ctx)]))
    tail = "\n".join(output.splitlines()[-10:])
    raise ConversionError(f"{model}: llama-perplexity failed ({done.returncode}):\n{tail}")
