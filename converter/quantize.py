"""K-quants: run llama.cpp's `llama-quantize` on an f16 GGUF."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from converter.errors import ConversionError
from converter.llama_tools import llama_tool

K_QUANTS = {"q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M", "q6_k": "Q6_K"}
_FALLBACK = re.compile(r"warning: (\S+)\s+- ncols")


def llama_quantize(source: Path, target: Path, outtype: str, server_bin: Path | None = None) -> list[str]:
    """Quantize `source` (f16 GGUF) into `target`; returns the tensors llama-quantize had to fall back on.

    llama-quantize stores a tensor whose row length is not a multiple of the K-quant block (256) in a
    32-block type (q5_0 for q4_K, q5_1 for q5_K, q8_0 for q6_K), or in F16 when that does not fit either.
    `server_bin`: the configured llama-server (see llama_tool).
    """
    done = subprocess.run(
        [str(llama_tool("llama-quantize", server_bin)), str(source), str(target), K_QUANTS[outtype]],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise ConversionError(
            f"{source}: llama-quantize {K_QUANTS[outtype]} failed ({done.returncode}):\n{tail}"
        )
    return _FALLBACK.findall(done.stdout + done.stderr)
