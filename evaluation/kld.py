"""llama.cpp's KL-divergence mode: log-probs of an f32 base GGUF, then each quant scored against them.

Step 1 writes the base's log-probabilities over a text to a `.kld` file
(`llama-perplexity -m base-f32.gguf -f val.txt --kl-divergence-base base.kld`); step 2 runs a quant
over the same tokens (`llama-perplexity -m q.gguf --kl-divergence-base base.kld --kl-divergence`)
and prints mean/percentile KLD, "Same top p" and the PPL ratio, which `parse_kld_output` reads.
Both steps use the same context, batch, f32 KV cache and no flash attention, so the only difference
between base and quant is the weights; `--no-repack` because these CPUs advertise AMX but a VM may
forbid it.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from converter.errors import ConversionError
from converter.llama_tools import NO_REPACK, gpu_offload, llama_tool
from evaluation.errors import EvalError
from evaluation.report import KldFigures

# llama.cpp's logger thread drops the lines still queued when the tool exits, more often the busier the
# machine (measured: 3 to 6 of 10 KL-divergence runs lost their final statistics at a load of 14 on 2
# cores); a run missing them is repeated. The base run does not need its last lines (see write_base).
ATTEMPTS = 8
_FLOAT = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)"
_FIELDS = {
    "mean_kld": rf"Mean\s+KLD:\s*{_FLOAT}",
    "mean_kld_error": rf"Mean\s+KLD:\s*\S+\s*±\s*{_FLOAT}",
    "max_kld": rf"Maximum\s+KLD:\s*{_FLOAT}",
    "p99_kld": rf"99\.0%\s+KLD:\s*{_FLOAT}",
    "median_kld": rf"Median\s+KLD:\s*{_FLOAT}",
    "same_top_percent": rf"Same top p:\s*{_FLOAT}",
    "same_top_error_percent": rf"Same top p:\s*\S+\s*±\s*{_FLOAT}",
    "ppl_quant": rf"Mean PPL\(Q\)\s*:\s*{_FLOAT}",
    "ppl_base": rf"Mean PPL\(base\)\s*:\s*{_FLOAT}",
    "ppl_ratio": rf"Mean PPL\(Q\)/PPL\(base\)\s*:\s*{_FLOAT}",
    "ppl_ratio_error": rf"Mean PPL\(Q\)/PPL\(base\)\s*:\s*\S+\s*±\s*{_FLOAT}",
}
_CHUNKS = re.compile(r"(?:computing|calculating perplexity) over (\d+) chunks, n_ctx=(\d+)")
_CUMULATIVE_PPL = re.compile(rf"\[(\d+)\]{_FLOAT},")


@dataclass(frozen=True)
class KldStats(KldFigures):
    """One quant against the base, as llama-perplexity printed it, and the windows it was scored on."""

    chunks: int
    n_ctx: int

    @property
    def scored_tokens(self) -> int:
        return self.chunks * scored_per_chunk(self.n_ctx)


def scored_per_chunk(n_ctx: int) -> int:
    """Tokens llama-perplexity scores per window: the second half, the first half being context."""
    return n_ctx - 1 - n_ctx // 2


def chunks_for(min_scored_tokens: int, n_ctx: int) -> int:
    """Windows needed to score at least `min_scored_tokens` tokens."""
    return math.ceil(min_scored_tokens / scored_per_chunk(n_ctx))


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def parse_kld_output(output: str, source: str) -> KldStats:
    """The statistics from llama-perplexity's `--kl-divergence` output; EvalError naming what is missing.

    `source` names the run (the GGUF) in the error message.
    """
    values: dict[str, float] = {}
    missing = []
    for name, pattern in _FIELDS.items():
        found = re.search(pattern, output)
        if found is None:
            missing.append(name)
            continue
        values[name] = float(found.group(1))
    chunks = _CHUNKS.search(output)
    if chunks is None:
        missing.append("chunks/n_ctx")
    if missing:
        raise EvalError(
            f"{source}: llama-perplexity output has no {', '.join(missing)} "
            f"(not a --kl-divergence run, or the tool stopped early); last lines:\n{_tail(output)}"
        )
    assert chunks is not None
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise EvalError(f"{source}: llama-perplexity printed non-finite {', '.join(bad)}")
    return KldStats(
        mean_kld=values["mean_kld"],
        mean_kld_error=values["mean_kld_error"],
        max_kld=values["max_kld"],
        p99_kld=values["p99_kld"],
        median_kld=values["median_kld"],
        same_top=values["same_top_percent"] / 100,
        same_top_error=values["same_top_error_percent"] / 100,
        ppl_quant=values["ppl_quant"],
        ppl_base=values["ppl_base"],
        ppl_ratio=values["ppl_ratio"],
        ppl_ratio_error=values["ppl_ratio_error"],
        chunks=int(chunks.group(1)),
        n_ctx=int(chunks.group(2)),
    )


def perplexity_argv(model: Path, n_ctx: int, threads: int, server_bin: Path | None) -> list[str]:
    """llama-perplexity on `model` with f32 KV caches and flash attention off (the reference numerics),
    no weight repacking, and every layer on the GPU when llama.cpp has one."""
    try:
        tool = llama_tool("llama-perplexity", server_bin)
    except ConversionError as exc:
        raise EvalError(str(exc)) from None
    return [
        str(tool), "-m", str(model), "-c", str(n_ctx), "-b", str(n_ctx), "-t", str(threads),
        "-ctk", "f32", "-ctv", "f32", "-fa", "off", NO_REPACK, *gpu_offload(server_bin),
    ]  # fmt: skip


@dataclass(frozen=True)
class Base:
    """The base log-probs file and what it covers; `ppl` is over its first `ppl_chunks` windows."""

    path: Path
    chunks: int
    n_ctx: int
    ppl: float
    ppl_chunks: int

    @property
    def scored_tokens(self) -> int:
        return self.chunks * scored_per_chunk(self.n_ctx)


def write_base(
    model: Path,
    text_file: Path,
    out: Path,
    n_ctx: int,
    chunks: int,
    threads: int = 2,
    server_bin: Path | None = None,
) -> Base:
    """Run the f32 `model` over the first `chunks` windows of `text_file`, saving its log-probs to `out`.

    The perplexity reported is the running value printed after the second-to-last window: the tool
    prints it while it computes the last one, so it is never among the lines lost at exit.
    `server_bin`: the configured llama-server, beside which llama-perplexity is (see llama_tool).
    """
    argv = [
        *perplexity_argv(model, n_ctx, threads, server_bin),
        "-f",
        str(text_file),
        "--chunks",
        str(chunks),
    ]
    argv += ["--kl-divergence-base", str(out)]
    output = ""
    for _ in range(ATTEMPTS):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        output = done.stdout + done.stderr
        found = _CHUNKS.search(output)
        running = {int(k): float(v) for k, v in _CUMULATIVE_PPL.findall(output)}
        if done.returncode == 0 and found and out.is_file() and out.stat().st_size > 0:
            used = int(found.group(1))
            if used >= 2 and used - 1 in running:
                return Base(out, used, int(found.group(2)), running[used - 1], used - 1)
    raise EvalError(
        f"{model}: llama-perplexity could not write the KL-divergence base ({done.returncode}):\n{_tail(output)}"
    )


def kl_divergence(model: Path, base: Base, threads: int = 2, server_bin: Path | None = None) -> KldStats:
    """Score `model` against the base file: llama.cpp's KLD statistics."""
    argv = [*perplexity_argv(model, base.n_ctx, threads, server_bin), "--kl-divergence-base", str(base.path)]
    argv.append("--kl-divergence")
    error: EvalError | None = None
    for _ in range(ATTEMPTS):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        output = done.stdout + done.stderr
        if done.returncode != 0:
            error = EvalError(
                f"{model}: llama-perplexity --kl-divergence failed ({done.returncode}):\n{_tail(output)}"
            )
            continue
        try:
            return parse_kld_output(output, str(model))
        except EvalError as exc:
            error = exc
    assert error is not None
    raise error
