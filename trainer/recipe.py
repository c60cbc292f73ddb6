"""A pretraining recipe per model size, derived from the parameter count and a tokens-per-parameter target.

`plan_recipe(name, cfg, nproc, tp, tokens_per_param=20)` derives, for every named config but `tiny` (`cfg`
is the config `trainer.configs.resolve_model` sized for the tokenizer's vocabulary, which moves N: `small`
is 123.7M parameters at the registry's 32,000 tokens and 102.3M at 4,096):

- tokens D = tokens_per_param x N (N: all parameters, the tied embedding counted once). 20 is the
  Chinchilla compute-optimal ratio (Hoffmann et al. 2022); nanochat sizes its runs the same way, from
  one dial (depth) through N to D = 20 N.
- compute C = 6 N D FLOPs; the batch and the peak learning rate follow the compute-optimal fits of
  DeepSeek LLM (2024, section 3.1), measured with our optimizer (AdamW, betas 0.9/0.95, weight decay
  0.1, warmup then decay): B_opt = 0.292 C^0.3271 tokens and lr_opt = 0.3118 C^-0.125. They land near
  the published recipes they generalize: 7B at 20 tokens/param gives ~3.8M tokens (Llama-2: 4M) and
  lr ~6e-4 (DeepSeek 7B: 4.2e-4, Llama-2 7B: 3e-4); 124M gives ~0.28M tokens and lr ~1.6e-3
  (GPT-3 Small: 0.5M, 6e-4).
- seq_len = the model's max_seq_len (the context it will serve; see docs/interfaces.md, GGUF).
- global batch: B_opt / seq_len sequences rounded to a power of two (so every power-of-two
  data-parallel degree divides it), at least one per data-parallel rank.
- micro-batch: the largest power of two per rank whose estimated memory (trainer.memory) fits the
  planned 80 GB GPU; the rest of the global batch is gradient accumulation. Full activation
  checkpointing is switched on only when even one sequence does not fit without it.
- steps = ceil(D / global batch tokens); warmup 1% of the steps, clamped to [100, 2000] (GPT-3 warmed
  up over 375M tokens, Llama-2 over 2000 steps) and never above a tenth of the run; cosine decay to
  10% of the peak (TrainConfig.min_lr_ratio).

torchtitan instead writes one hand-tuned recipe per flavor (llama3 8B: lr 3e-4, 200 warmup steps); a
derived one keeps the sizes consistent with each other and says where its numbers come from.

`tiny` keeps the recipe tuned for the 2-core quickstart budget (TrainConfig's defaults: 600 steps of
8 x 256 tokens, lr 3e-3): ~1.2M tokens, far from 20 per parameter, because the budget is minutes.
Every field stays overridable; an override of steps changes tokens, not the other way round.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from trainer.configs import ModelConfig, TrainConfig
from trainer.memory import MemoryEstimate, estimate_memory

TOKENS_PER_PARAM = 20.0
BUDGET_RECIPES = {"tiny": TrainConfig()}
MIN_WARMUP, MAX_WARMUP = 100, 2000


@dataclass(frozen=True)
class Plan:
    """A planned run: the JSON `chakor train --plan` prints, and the TrainConfig it trains with."""

    config: str
    vocab_size: int
    params: int
    tokens: int
    tokens_per_param: float
    steps: int
    global_batch_tokens: int
    seq_len: int
    lr: float
    warmup_steps: int
    global_batch_size: int
    local_batch_size: int
    nproc: int
    tensor_parallel: int
    activation_checkpointing: bool
    recipe: str
    memory_per_gpu_gib: dict[str, float]
    fits_80gb: bool
    model: ModelConfig
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["model"], data["train"]
        return data


def _pow2(x: float) -> int:
    return 2 ** max(0, round(math.log2(max(x, 1.0))))


def _micro_batch(cfg: ModelConfig, seq_len: int, per_rank: int, dp: int, tp: int) -> tuple[int, bool]:
    """Largest power-of-two micro-batch <= per_rank that fits, and whether it needs activation checkpointing."""
    for ac in (False, True):
        b = _pow2(per_rank) if _pow2(per_rank) <= per_rank else _pow2(per_rank) // 2
        while b >= 1:
            if estimate_memory(cfg, seq_len, b, dp, tp, ac).fits():
                return b, ac
            b //= 2
    return 1, True


def _derive(cfg: ModelConfig, tokens_per_param: float, dp: int, tp: int, seq_len: int | None) -> TrainConfig:
    n = cfg.num_params()
    seq_len = seq_len or cfg.max_seq_len
    tokens = tokens_per_param * n
    compute = 6.0 * n * tokens
    batch_tokens = 0.292 * compute**0.3271
    lr = 0.3118 * compute**-0.125
    global_seqs = max(dp, _pow2(batch_tokens / seq_len))
    local, ac = _micro_batch(cfg, seq_len, global_seqs // dp, dp, tp)
    global_seqs = math.ceil(global_seqs / (local * dp)) * local * dp
    steps = max(1, math.ceil(tokens / (global_seqs * seq_len)))
    warmup = max(1, min(steps // 10, min(MAX_WARMUP, max(MIN_WARMUP, round(0.01 * steps)))))
    return TrainConfig(
        steps=steps, seq_len=seq_len, local_batch_size=local, global_batch_size=global_seqs,
        lr=float(f"{lr:.2e}"), warmup_steps=warmup, tensor_parallel=tp,
        eval_every=max(100, steps // 50), checkpoint_every=max(100, steps // 20),
        activation_checkpointing=ac,
    )  # fmt: skip


def plan_recipe(
    name: str,
    cfg: ModelConfig,
    nproc: int = 1,
    tp: int = 1,
    tokens_per_param: float = TOKENS_PER_PARAM,
    **overrides: Any,
) -> Plan:
    """The recipe for model `cfg` named `name` (as `trainer.configs.resolve_model` returns them; "custom"
    gets the budget recipe) on `nproc` processes with tensor-parallel degree `tp`; `overrides` replace
    TrainConfig fields afterwards."""
    if tokens_per_param <= 0:
        raise ValueError(f"tokens_per_param must be positive, got {tokens_per_param}")
    if nproc % tp:
        raise ValueError(f"--nproc {nproc} is not a multiple of --tp {tp}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown recipe field(s) {', '.join(unknown)}")
    tp = overrides.get("tensor_parallel", tp)
    dp = nproc // tp
    if name in BUDGET_RECIPES or name == "custom":
        base, source = replace(BUDGET_RECIPES.get(name, TrainConfig()), tensor_parallel=tp), "budget"
    else:
        base, source = _derive(cfg, tokens_per_param, dp, tp, overrides.get("seq_len")), "derived"
    train = replace(base, **overrides)
    rows = train.global_batch_size if train.global_batch_size > 0 else train.local_batch_size * dp
    batch_tokens = rows * train.seq_len
    memory: MemoryEstimate = estimate_memory(
        cfg, train.seq_len, train.local_batch_size, dp, tp, train.activation_checkpointing
    )
    params = cfg.num_params()
    changed = sorted(k for k in overrides if k != "tensor_parallel")  # parallelism, not recipe
    return Plan(
        config=name,
        vocab_size=cfg.vocab_size,
        params=params,
        tokens=train.steps * batch_tokens,
        tokens_per_param=round(train.steps * batch_tokens / params, 3),
        steps=train.steps,
        global_batch_tokens=batch_tokens,
        seq_len=train.seq_len,
        lr=train.lr,
        warmup_steps=train.warmup_steps,
        global_batch_size=rows,
        local_batch_size=train.local_batch_size,
        nproc=nproc,
        tensor_parallel=tp,
        activation_checkpointing=train.activation_checkpointing,
        recipe=f"{source} + overrides ({', '.join(changed)})" if changed else source,
        memory_per_gpu_gib=memory.to_gib(),
        fits_80gb=memory.fits(),
        model=cfg,
        train=train,
    )
