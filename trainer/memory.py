"""Per-GPU memory of a training step under FSDP2 x TP, estimated from the model config (no torch).

The recipe (trainer.recipe) uses it to pick the micro-batch, the dry run (trainer.titan.dry_run)
prints it next to the parameter bytes it measured on the real sharded model.

What is counted, per GPU, for AdamW with bf16 compute (FSDP2 mixed precision as torchtitan runs it):
- params: fp32 master weights, sharded over dp x tp: 4 N / (dp tp) bytes;
- grads: fp32, sharded the same way (reduce dtype fp32): 4 N / (dp tp);
- optimizer: AdamW's two fp32 moments: 8 N / (dp tp);
- buffers: FSDP's unsharded bf16 copies of two blocks (the one computing and the one prefetched)
  plus one block's unsharded fp32 gradients before reduce-scatter, and the root unit (embeddings,
  head) kept unsharded in bf16 through the step;
- activations at the micro-batch: what autograd keeps per token and layer (see `layer_bytes`), for
  every layer (eager or selective AC), or with full activation checkpointing only each block's input
  plus one block being recomputed; plus the logits (LOGIT_BYTES per element) over the full vocabulary
  (the head's output is replicated over TP). Attention is flash/memory-efficient on GPU, so no T x T scores.
Not counted: the CUDA context, NCCL buffers and allocator fragmentation; the recipe leaves
`1 - USABLE_FRACTION` of the GPU for them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from trainer.configs import ModelConfig

GIB = 2**30
GPU_BYTES = 80 * GIB  # the planned GPU: an 80 GB H100 / A100
USABLE_FRACTION = 0.85


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU, by kind."""

    params: int
    grads: int
    optimizer: int
    buffers: int
    activations: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.buffers + self.activations

    def fits(self, gpu_bytes: int = GPU_BYTES) -> bool:
        return self.total <= USABLE_FRACTION * gpu_bytes

    def to_gib(self) -> dict[str, float]:
        return {k: round(v / GIB, 2) for k, v in {**asdict(self), "total": self.total}.items()}


def block_params(cfg: ModelConfig) -> int:
    """Parameters of one transformer block."""
    hd = cfg.head_dim
    attention = cfg.dim * cfg.n_heads * hd * 2 + 2 * cfg.dim * cfg.n_kv_heads * hd
    return attention + 3 * cfg.dim * cfg.ffn_hidden_dim + 2 * cfg.dim


AC_MODES = ("none", "selective", "full")
"""Activation checkpointing: none, torchtitan's per-op selective AC (`SelectiveAC`), or whole blocks (`FullAC`)."""


def layer_bytes(cfg: ModelConfig, tp: int, ac_mode: str = "none") -> int:
    """Activation bytes autograd keeps per token for one block.

    Eager (`none`), from the measured figures for this block: each of the two RMSNorms keeps 10 d bytes
    (the fp32 upcast of its input and the normalised fp32 product, 4 d each, and its bf16 output, 2 d);
    the TP plan runs the norms sequence-parallel, so each rank keeps 1/tp of the sequence's norms, as it
    keeps 1/tp of q/k/v into attention and its output (bf16) and of SwiGLU's w1, w3, silu and product
    tensors (4 x bf16 at the hidden width). At the 7b shapes and TP=1 that is 198 KB per token per layer
    (measured: ~203 KB); without sequence parallelism the replicated norms were 84% of it at TP=8.

    `selective` (torchtitan's SelectiveAC: matmul and attention outputs saved, every second matmul and
    all elementwise work recomputed): the block input and the mid-block residual (bf16) plus the
    attention tensors and half the SwiGLU ones. `full` keeps only the block input (counted by the caller).
    """
    if ac_mode not in AC_MODES:
        raise ValueError(
            f"activation checkpointing mode must be one of {', '.join(AC_MODES)}, got {ac_mode!r}"
        )
    d, q, kv, f = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_hidden_dim
    attention = 2 * (q + 2 * kv) + 2 * q
    if ac_mode == "selective":
        return int(2 * 2 * d + (attention + 2 * 2 * f) / tp)
    return int((2 * 10 * d + attention + 4 * 2 * f) / tp)


LOGIT_BYTES = 14
"""Bytes per logit element kept through the loss (measured): bf16 output, its fp32 upcast and the fp32
log-softmax gradient buffer."""


def estimate_memory(
    cfg: ModelConfig,
    seq_len: int,
    micro_batch: int,
    dp: int,
    tp: int,
    activation_checkpointing: bool | str = False,
) -> MemoryEstimate:
    """Per-GPU bytes of one training step; `dp` is the number of FSDP shards (the ranks of one FSDP
    group: all data-parallel ranks under FSDP, the ranks of one replica under HSDP).
    `activation_checkpointing`: True (full), False (none) or an AC_MODES name."""
    mode = (
        activation_checkpointing
        if isinstance(activation_checkpointing, str)
        else ("full" if activation_checkpointing else "none")
    )
    n, shards = cfg.num_params(), dp * tp
    block = block_params(cfg)
    root = cfg.vocab_size * cfg.dim * (1 if cfg.tie_embeddings else 2)
    buffers = (2 * block * 2 + block * 4 + root * 2) // tp
    tokens = micro_batch * seq_len
    if mode == "full":
        kept = 2 * cfg.dim * tokens * cfg.n_layers + layer_bytes(cfg, tp) * tokens
    else:
        kept = layer_bytes(cfg, tp, mode) * tokens * cfg.n_layers
    logits = tokens * cfg.vocab_size * LOGIT_BYTES
    return MemoryEstimate(
        params=4 * n // shards,
        grads=4 * n // shards,
        optimizer=8 * n // shards,
        buffers=buffers,
        activations=kept + logits,
    )
