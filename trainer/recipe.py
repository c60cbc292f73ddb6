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
  planned 80 GB GPU; the rest of the global batch is gradient accumulation.
- steps = ceil(D / global batch tokens); warmup 1% of the steps, clamped to [100, 2000] (GPT-3 warmed
  up over 375M tokens, Llama-2 over 2000 steps) and never above a tenth of the run; cosine decay to
  10% of the peak (TrainConfig.min_lr_ratio).
- published caps (PUBLISHED): a size with a published recipe never gets a higher peak LR than it, and
  takes its warmup. `7b` is the seed's model, Llama-2-7B shaped: the fit gives 6.0e-4 with 321 warmup
  steps, twice Llama-2-7B's 3e-4 and a sixth of its 2000 warmup steps, and the seed's early runs at
  higher rates diverged; it trains at 3e-4 with 2000 warmup steps. `--plan`'s `rules` names the rule
  behind every number.
- layout: on more than one node the default is HSDP (FSDP inside each node, `--nnodes` replicas across
  them): FSDP over every GPU of the job would all-gather and reduce-scatter the whole model over the
  inter-node network on every micro-batch (trainer.comm prints the seconds either way).
- micro-batch: tried eager, then with torchtitan's selective activation checkpointing, then full AC.
- checkpoints every ~30 minutes of planned step time (trainer.comm), logging every 10 steps above 1B
  parameters (the console and metrics.jsonl need no more, and each logged step synchronises the GPU).

torchtitan instead writes one hand-tuned recipe per flavor (llama3 8B: lr 3e-4, 200 warmup steps); a
derived one keeps the sizes consistent with each other and says where its numbers come from.

`tiny` keeps the recipe tuned for the 2-core quickstart budget (TrainConfig's defaults: 600 steps of
8 x 256 tokens, lr 3e-3): ~1.2M tokens, far from 20 per parameter, because the budget is minutes.
Every field stays overridable; an override of steps changes tokens, not the other way round.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

from trainer.comm import Layout, StepTime, step_time
from trainer.configs import ModelConfig, SFTConfig, TrainConfig
from trainer.memory import MemoryEstimate, estimate_memory

TOKENS_PER_PARAM = 20.0
BUDGET_RECIPES = {"tiny": TrainConfig()}
MIN_WARMUP, MAX_WARMUP = 100, 2000
CHECKPOINT_SECONDS = 30 * 60
BIG_MODEL_PARAMS, BIG_MODEL_LOG_FREQ = 1_000_000_000, 10


@dataclass(frozen=True)
class Published:
    """A size's published recipe: its peak LR caps the derived one, and its warmup is taken."""

    lr: float
    warmup_steps: int
    source: str


PUBLISHED = {
    "7b": Published(3e-4, 2000, "Llama-2-7B (Touvron et al. 2023) and the seed: lr 3e-4, 2000 warmup steps"),
}

SFT_LR_FRACTION = 0.1
"""SFT's peak LR as a fraction of the pretraining peak: tiny's quickstart tuned 3e-4 after 3e-3."""
SFT_PUBLISHED_LR = {"7b": (2e-5, "Llama-2-chat's SFT (Touvron et al. 2023): 2e-5")}


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
    gradient_accumulation: int
    nproc: int
    nnodes: int
    world_size: int
    tensor_parallel: int
    data_parallel_shard: int
    data_parallel_replicate: int
    activation_checkpointing: bool
    activation_checkpointing_mode: str
    recipe: str
    memory_per_gpu_gib: dict[str, float]
    fits_80gb: bool
    step_time: dict[str, Any]
    checkpoint_every: int
    checkpoint_interval_minutes: float
    log_freq: int
    rules: dict[str, str]
    model: ModelConfig
    train: TrainConfig
    kind: str = "pretrain"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["model"], data["train"], data["step_time"]
        return {**data, **self.step_time}


def _pow2(x: float) -> int:
    return 2 ** max(0, round(math.log2(max(x, 1.0))))


def ac_mode(train: TrainConfig) -> str:
    """The trainer.memory AC mode a recipe trains with."""
    return train.activation_checkpointing_mode if train.activation_checkpointing else "none"


def _micro_batch(cfg: ModelConfig, seq_len: int, per_rank: int, shard: int, tp: int) -> tuple[int, str]:
    """Largest power-of-two micro-batch <= per_rank that fits, and the AC mode it needs (none first)."""
    for mode in ("none", "selective", "full"):
        b = _pow2(per_rank) if _pow2(per_rank) <= per_rank else _pow2(per_rank) // 2
        while b >= 1:
            if estimate_memory(cfg, seq_len, b, shard, tp, mode).fits():
                return b, mode
            b //= 2
    return 1, "full"


_Recipe = TypeVar("_Recipe", bound=TrainConfig)


def _with_ac(train: _Recipe, mode: str) -> _Recipe:
    if mode == "none":
        return replace(train, activation_checkpointing=False)
    return replace(train, activation_checkpointing=True, activation_checkpointing_mode=mode)


def _derive(
    name: str, cfg: ModelConfig, tokens_per_param: float, layout: Layout, seq_len: int | None
) -> tuple[TrainConfig, dict[str, str]]:
    n = cfg.num_params()
    seq_len = seq_len or cfg.max_seq_len
    dp = layout.dp
    tokens = tokens_per_param * n
    compute = 6.0 * n * tokens
    batch_tokens = 0.292 * compute**0.3271
    lr = float(f"{0.3118 * compute**-0.125:.2e}")
    global_seqs = max(dp, _pow2(batch_tokens / seq_len))
    local, mode = _micro_batch(cfg, seq_len, global_seqs // dp, layout.shard, layout.tp)
    global_seqs = math.ceil(global_seqs / (local * dp)) * local * dp
    steps = max(1, math.ceil(tokens / (global_seqs * seq_len)))
    warmup = max(1, min(steps // 10, min(MAX_WARMUP, max(MIN_WARMUP, round(0.01 * steps)))))
    rules = {
        "steps": f"tokens {tokens_per_param:g} x params / global batch tokens",
        "global_batch_size": "DeepSeek LLM fit B = 0.292 C^0.3271 tokens, power of two of seq_len sequences",
        "lr": "DeepSeek LLM fit lr = 0.3118 C^-0.125",
        "warmup_steps": "1% of steps within [100, 2000], at most a tenth of the run",
        "local_batch_size": f"largest power of two fitting 80 GB (trainer.memory), activation checkpointing {mode}",
        "seq_len": "the model's max_seq_len",
    }
    published = PUBLISHED.get(name)
    if published is not None:
        if published.lr < lr:
            lr, rules["lr"] = (
                published.lr,
                f"capped at the published value: {published.source} (fit: {lr:.2e})",
            )
        warmup = max(1, min(steps // 10, published.warmup_steps))
        rules["warmup_steps"] = f"published: {published.source}, at most a tenth of the run"
    train = TrainConfig(
        steps=steps, seq_len=seq_len, local_batch_size=local, global_batch_size=global_seqs,
        lr=lr, warmup_steps=warmup, tensor_parallel=layout.tp, data_parallel_replicate=layout.replicate,
        eval_every=max(100, steps // 50),
        log_freq=BIG_MODEL_LOG_FREQ if n > BIG_MODEL_PARAMS else 1,
    )  # fmt: skip
    return _with_ac(train, mode), rules


def _layout(nproc: int, nnodes: int, tp: int, overrides: dict[str, Any]) -> Layout:
    """The mesh: `--dp-replicate` when given, else HSDP with one replica per node on several nodes."""
    if nproc % tp:
        raise ValueError(f"--nproc {nproc} is not a multiple of --tp {tp}")
    replicate = overrides.get("data_parallel_replicate") or (nnodes if nnodes > 1 else 1)
    return Layout(nproc=nproc, nnodes=nnodes, tp=tp, replicate=replicate)


def _checkpoint_every(seconds: float, steps: int) -> int:
    """Steps between checkpoints for ~CHECKPOINT_SECONDS of planned step time (at least 1, at most the run)."""
    return max(1, min(steps, round(CHECKPOINT_SECONDS / max(seconds, 1e-9))))


def _plan(
    name: str,
    cfg: ModelConfig,
    layout: Layout,
    train: TrainConfig,
    source: str,
    changed: list[str],
    rules: dict[str, str],
    kind: str = "pretrain",
) -> Plan:
    """The Plan of `train` on `layout`: memory, step time, batch arithmetic."""
    rows = train.global_batch_size if train.global_batch_size > 0 else train.local_batch_size * layout.dp
    if rows % (train.local_batch_size * layout.dp):
        raise ValueError(
            f"global batch {rows} is not a multiple of the micro-batch {train.local_batch_size} x "
            f"{layout.dp} data-parallel ranks"
        )
    accumulation = rows // (train.local_batch_size * layout.dp)
    batch_tokens = rows * train.seq_len
    mode = ac_mode(train)
    memory: MemoryEstimate = estimate_memory(
        cfg, train.seq_len, train.local_batch_size, layout.shard, layout.tp, mode
    )
    timing: StepTime = step_time(cfg, layout, train.seq_len, train.local_batch_size, accumulation, mode)
    params = cfg.num_params()
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
        gradient_accumulation=accumulation,
        nproc=layout.nproc,
        nnodes=layout.nnodes,
        world_size=layout.world,
        tensor_parallel=layout.tp,
        data_parallel_shard=layout.shard,
        data_parallel_replicate=layout.replicate,
        activation_checkpointing=train.activation_checkpointing,
        activation_checkpointing_mode=mode,
        recipe=f"{source} + overrides ({', '.join(changed)})" if changed else source,
        memory_per_gpu_gib=memory.to_gib(),
        fits_80gb=memory.fits(),
        step_time=timing.to_dict(),
        checkpoint_every=train.checkpoint_every,
        checkpoint_interval_minutes=round(train.checkpoint_every * timing.step / 60, 1),
        log_freq=train.log_freq,
        rules={k: v for k, v in rules.items() if k not in changed},
        model=cfg,
        train=train,
        kind=kind,
    )


def _check_overrides(overrides: dict[str, Any], config: type[TrainConfig]) -> None:
    known = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown recipe field(s) {', '.join(unknown)}")


def plan_recipe(
    name: str,
    cfg: ModelConfig,
    nproc: int = 1,
    tp: int = 1,
    tokens_per_param: float = TOKENS_PER_PARAM,
    nnodes: int = 1,
    **overrides: Any,
) -> Plan:
    """The recipe for model `cfg` named `name` (as `trainer.configs.resolve_model` returns them; "custom"
    gets the budget recipe) on `nnodes` nodes of `nproc` processes with tensor-parallel degree `tp`;
    `overrides` replace TrainConfig fields afterwards."""
    if tokens_per_param <= 0:
        raise ValueError(f"tokens_per_param must be positive, got {tokens_per_param}")
    _check_overrides(overrides, TrainConfig)
    tp = overrides.get("tensor_parallel", tp)
    layout = _layout(nproc, nnodes, tp, overrides)
    if name in BUDGET_RECIPES or name == "custom":
        base = replace(BUDGET_RECIPES.get(name, TrainConfig()), tensor_parallel=tp)
        base, source = replace(base, data_parallel_replicate=layout.replicate), "budget"
        rules = {"recipe": "the quickstart's budget recipe (TrainConfig defaults)"}
    else:
        (base, rules), source = (
            _derive(name, cfg, tokens_per_param, layout, overrides.get("seq_len")),
            "derived",
        )
    train = replace(base, **overrides)
    changed = sorted(k for k in overrides if k not in ("tensor_parallel", "data_parallel_replicate"))
    if source == "derived" and "checkpoint_every" not in overrides:
        draft = _plan(name, cfg, layout, train, source, changed, rules)
        seconds = draft.step_time["compute_seconds_per_step"], draft.step_time["comm_seconds_per_step"]
        train = replace(train, checkpoint_every=_checkpoint_every(max(seconds), train.steps))
        rules["checkpoint_every"] = f"~{CHECKPOINT_SECONDS // 60} min at the planned step time"
    return _plan(name, cfg, layout, train, source, changed, rules)


def sft_lr(name: str, base_lr: float) -> tuple[float, str]:
    """SFT's peak LR: SFT_LR_FRACTION of the pretraining peak, capped at a published SFT rate."""
    lr = float(f"{base_lr * SFT_LR_FRACTION:.2e}")
    rule = f"{SFT_LR_FRACTION:g} x the pretraining peak {base_lr:.2e}"
    published = SFT_PUBLISHED_LR.get(name)
    if published is not None and published[0] < lr:
        return published[0], f"capped at {published[1]} ({rule}: {lr:.2e})"
    return lr, rule


def plan_sft(
    name: str,
    cfg: ModelConfig,
    base_train: TrainConfig,
    nproc: int = 1,
    nnodes: int = 1,
    rows: int | None = None,
    **overrides: Any,
) -> Plan:
    """The fine-tuning plan from a pretraining recipe `base_train` (the base run's, or the plan's):
    its sequence length, seed and parallel layout (TP, compile, AC, replicas unless the node count
    changes them); the base run's micro-batch and AC when they fit this layout, else re-planned with the
    memory model (at most the base run's micro-batch); the LR
    from `sft_lr`; steps = epochs over `rows` packed rows (0 without data)."""
    _check_overrides(overrides, SFTConfig)
    tp = overrides.get("tensor_parallel", base_train.tensor_parallel)
    if "data_parallel_replicate" not in overrides and nnodes == 1:
        overrides = {
            **overrides,
            "data_parallel_replicate": min(base_train.data_parallel_replicate, nproc // tp),
        }
    layout = _layout(nproc, nnodes, tp, overrides)
    seq_len = overrides.get("seq_len", base_train.seq_len)
    local, mode = base_train.local_batch_size, ac_mode(base_train)
    if not estimate_memory(cfg, seq_len, local, layout.shard, layout.tp, mode).fits():
        local, mode = _micro_batch(cfg, seq_len, local, layout.shard, layout.tp)
    lr, lr_rule = sft_lr(name, base_train.lr)
    sft = SFTConfig(
        seq_len=seq_len, local_batch_size=local, seed=base_train.seed, lr=lr, tensor_parallel=tp,
        data_parallel_replicate=layout.replicate, compile=base_train.compile, log_freq=base_train.log_freq,
    )  # fmt: skip
    sft = replace(_with_ac(sft, mode), **overrides)
    per_step = sft.global_batch_size if sft.global_batch_size > 0 else sft.local_batch_size * layout.dp
    if "steps" not in overrides:
        sft.steps = max(1, math.ceil(sft.epochs * rows / per_step)) if rows else 0
    sft.warmup_steps = min(sft.warmup_steps, max(1, sft.steps // 10))
    sft.eval_every = overrides.get("eval_every") or max(1, sft.steps // 4)
    # An SFT run cannot be resumed (a new --out each time), so only its last checkpoint is ever read.
    sft.checkpoint_every = overrides.get("checkpoint_every") or max(1, sft.steps)
    rules = {
        "lr": lr_rule,
        "local_batch_size": (
            f"the base run's, activation checkpointing {mode}"
            if local == base_train.local_batch_size
            else f"largest power of two <= the base run's {base_train.local_batch_size} fitting 80 GB, "
            f"activation checkpointing {mode}"
        ),
        "steps": "epochs x packed rows / rows per step"
        if rows
        else "epochs x packed rows / rows per step (needs --data)",
        "seq_len": "the base run's",
        "checkpoint_every": "the last step only (an SFT run is never resumed)",
    }
    changed = sorted(k for k in overrides if k not in ("tensor_parallel", "data_parallel_replicate"))
    return _plan(name, cfg, layout, sft, "sft", changed, rules, kind="sft")
