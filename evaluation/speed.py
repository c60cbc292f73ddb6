"""Serving speed of each GGUF on this machine: prompt and generation tokens/s from llama-bench."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from converter.errors import ConversionError
from converter.llama_tools import gpu_offload, llama_tool
from evaluation.errors import EvalError

PROMPT_TOKENS = 128
GEN_TOKENS = 64
REPETITIONS = 3


@dataclass(frozen=True)
class Speed:
    """llama-bench's mean tokens/s (and standard deviation) for one GGUF."""

    file: str
    prompt_tps: float
    prompt_tps_std: float
    gen_tps: float
    gen_tps_std: float


def parse_bench(output: str) -> dict[str, Speed]:
    """llama-bench `-o json` output -> Speed per model path (as passed to -m); EvalError when it is not that."""
    try:
        runs = json.loads(output)
        rows: dict[str, dict[str, tuple[float, float]]] = {}
        for run in runs:
            kind = "prompt" if run["n_gen"] == 0 else "gen"
            rows.setdefault(str(run["model_filename"]), {})[kind] = (
                float(run["avg_ts"]),
                float(run["stddev_ts"]),
            )
        return {name: Speed(name, *kinds["prompt"], *kinds["gen"]) for name, kinds in rows.items()}
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise EvalError(
            f"llama-bench printed no usable JSON ({type(exc).__name__}: {exc}): {output[:200]!r}"
        ) from None


def bench(models: Sequence[Path], threads: int = 2, server_bin: Path | None = None) -> dict[str, Speed]:
    """Run llama-bench (beside `server_bin`, see llama_tool) once over all `models`.

    Each is tested REPETITIONS times, without repacking.
    """
    try:
        tool = llama_tool("llama-bench", server_bin)
    except ConversionError as exc:
        raise EvalError(str(exc)) from None
    argv = [str(tool)]
    for model in models:
        argv += ["-m", str(model)]
    argv += ["-p", str(PROMPT_TOKENS), "-n", str(GEN_TOKENS), "-t", str(threads), "-r", str(REPETITIONS)]
    argv += ["--repack", "0", "-o", "json", *gpu_offload(server_bin)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        raise EvalError(f"llama-bench failed ({done.returncode}):\n{tail}")
    speeds = parse_bench(done.stdout)
    missing = [str(m) for m in models if str(m) not in speeds]
    if missing:
        raise EvalError(f"llama-bench reported nothing for {', '.join(missing)}")
    return speeds
