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
  every layer, or with full activation checkpointing only each block's input plus one block being
  recomputed; plus the logits (bf16 out, fp32 copy, fp32 gradient) over the full vocabulary (the head's
  output is replicated over TP). Attention is flash/memory-efficient on GPU, so no T x T scores.
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


def layer_bytes(cfg: ModelConfig, tp: int) -> int:
    """Activation bytes autograd keeps per token for one block (bf16 tensors, fp32 where computed so).

    Residual inputs and norm outputs are full width (no sequence parallel); the q/k/v, attention
    output and SwiGLU tensors are split over TP. RMSNorm and RoPE compute in fp32 (trainer.model).
    """
    d, q, kv, f = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_hidden_dim
    bf16 = 2 * (2 * d + 2 * d + (q + 2 * kv) / tp + q / tp + 4 * f / tp)
    fp32 = 4 * (2 * d + 2 * (q + kv) / tp)
    return int(bf16 + fp32)


def estimate_memory(
    cfg: ModelConfig, seq_len: int, micro_batch: int, dp: int, tp: int, activation_checkpointing: bool = False
) -> MemoryEstimate:
    """Per-GPU bytes of one training step; `dp` is the number of FSDP shards (all data-parallel ranks)."""
    n, shards = cfg.num_params(), dp * tp
    block = block_params(cfg)
    root = cfg.vocab_size * cfg.dim * (1 if cfg.tie_embeddings else 2)
    buffers = (2 * block * 2 + block * 4 + root * 2) // tp
    tokens = micro_batch * seq_len
    per_layer = layer_bytes(cfg, tp) * tokens
    if activation_checkpointing:
        kept = 2 * cfg.dim * tokens * cfg.n_layers + per_layer
    else:
        kept = per_layer * cfg.n_layers
    logits = tokens * cfg.vocab_size * (2 + 4 + 4)
    return MemoryEstimate(
        params=4 * n // shards,
        grads=4 * n // shards,
        optimizer=8 * n // shards,
        buffers=buffers,
        activations=kept + logits,
    )
