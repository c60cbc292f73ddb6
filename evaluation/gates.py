"""Quantization gates: how far a GGUF's next-token distributions may drift from the f32 export.

Measured as the mean KL divergence (and, for q8_0, the share of tokens whose most likely token is
unchanged) against an f32 GGUF of the same export, with llama.cpp's own `llama-perplexity
--kl-divergence`. The limits sit at or above what llama.cpp publishes for well-behaved models
(tools/perplexity/README.md, "LLaMA 2 vs. LLaMA 3 Quantization comparison" and "BF16 vs. FP16"),
so a healthy conversion passes and a broken one (a wrong tensor, a bad scale) fails by orders of
magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gate:
    """Limits for one quantization type and the llama.cpp figures they come from."""

    max_mean_kld: float
    min_same_top: float | None  # fraction of tokens with the same top-1 token; None: not gated
    llama_cpp_reference: str


GATES: dict[str, Gate] = {
    "f16": Gate(1e-4, None, "LLaMA-3-8B BF16 vs FP16: mean KLD 0.000025, same top 99.74%"),
    "bf16": Gate(1e-4, None, "LLaMA-3-8B BF16 vs FP16: mean KLD 0.000025, same top 99.74%"),
    "q8_0": Gate(
        1e-3, 0.98, "Llama-2-7B q8_0: mean KLD 0.000369, same top 98.85% (LLaMA-3-8B: 0.001355, 97.67%)"
    ),
    "q6_k": Gate(5e-3, None, "Llama-2-7B q6_K: mean KLD 0.002098 (LLaMA-3-8B: 0.005452)"),
    "q5_k_m": Gate(1e-2, None, "LLaMA-3-8B q5_K_M: mean KLD 0.010762"),
    "q4_k_m": Gate(5e-2, None, "Llama-2-7B q4_K_M: mean KLD 0.012686 (LLaMA-3-8B: 0.031273)"),
}

# Smallest first: the order in which the quickstart looks for a GGUF to serve.
SIZE_ORDER = ("q4_k_m", "q5_k_m", "q6_k", "q8_0", "bf16", "f16")
K_QUANTS = ("q4_k_m", "q5_k_m", "q6_k")
K_BLOCK = 256  # values per K-quant super-block: rows must be a multiple of it (ggml's QK_K)


@dataclass(frozen=True)
class GateResult:
    """One quant's verdict and the sentence that explains it."""

    quant: str
    passed: bool
    message: str


def apply_gate(quant: str, mean_kld: float, same_top: float) -> GateResult:
    """Compare one quant's mean KLD and same-top-token share with its row of GATES."""
    gate = GATES.get(quant)
    if gate is None:
        raise KeyError(f"no gate for quantization {quant!r}; known: {', '.join(GATES)}")
    problems = []
    if not mean_kld <= gate.max_mean_kld:  # written so that NaN fails
        problems.append(f"mean KLD {mean_kld:.6g} > {gate.max_mean_kld:g}")
    if gate.min_same_top is not None and not same_top >= gate.min_same_top:
        problems.append(f"same top token {same_top:.2%} < {gate.min_same_top:.0%}")
    if problems:
        return GateResult(quant, False, f"{quant} FAILS its gate: {'; '.join(problems)}")
    limits = f"mean KLD {mean_kld:.3g} <= {gate.max_mean_kld:g}"
    if gate.min_same_top is not None:
        limits += f", same top {same_top:.2%} >= {gate.min_same_top:.0%}"
    return GateResult(quant, True, f"{quant} passes: {limits}")


def k_quant_obstacle(dim: int, ffn_hidden_dim: int) -> str | None:
    """Why K-quants do not apply to a model of this width, or None when they do.

    A K-quant stores rows in super-blocks of 256 values; llama-quantize keeps a tensor whose rows
    are shorter or not a multiple of 256 in a 32-value type (q5_0, q5_1, q8_0) instead. When the
    model width is not a multiple of 256, every attention and FFN matrix falls back, and the file
    named q4_k_m would not be a K-quant at all.
    """
    if dim % K_BLOCK == 0:
        return None
    return (
        f"K-quants need rows that are a multiple of {K_BLOCK} values; this model's rows are {dim} "
        f"(width) and {ffn_hidden_dim} (FFN) values long, so llama-quantize would store every matrix "
        "in a 32-value fallback type (q5_0/q5_1/q8_0): train a model at least 256 wide for K-quants"
    )


def smallest_passing(passed: dict[str, bool]) -> str | None:
    """The smallest quant type that passed its gate; f16 when none smaller did; None when f16 fails too."""
    for quant in SIZE_ORDER:
        if passed.get(quant):
            return quant
    return None
