"""Run llama.cpp's `llama-perplexity` on a text and read its result."""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from pathlib import Path

from converter.errors import ConversionError
from converter.llama_tools import NO_REPACK, llama_tool

# with --ppl-output-type 1 every chunk prints: offset, perplexity, mean NLL so far, its standard error
_CHUNK_LINE = re.compile(r"^\s*\d+\s+[\d.]+\s+([\d.]+)\s+[\d.eE+-]+\s*$", re.MULTILINE)


def llama_perplexity(model: Path, text: str, n_ctx: int, n_chunks: int, threads: int = 2) -> float:
    """Perplexity of `model` on `text` over `n_chunks` windows of `n_ctx` tokens (f32 KV cache)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        argv = [
            str(llama_tool("llama-perplexity")), "-m", str(model), "-f", f.name,
            "-c", str(n_ctx), "-b", str(n_ctx), "--chunks", str(n_chunks), "-t", str(threads),
            "-ctk", "f32", "-ctv", "f32", "--ppl-output-type", "1", NO_REPACK,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    chunks = _CHUNK_LINE.findall(output)
    if done.returncode != 0 or not chunks:
        tail = "\n".join(output.splitlines()[-10:])
        raise ConversionError(f"{model}: llama-perplexity failed ({done.returncode}):\n{tail}")
    return math.exp(float(chunks[-1]))
