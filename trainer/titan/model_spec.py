"""Chakor's Transformer as a torchtitan model: config adapter, parallelize function, ModelSpec.

The model itself (trainer/model.py) knows nothing of torchtitan; `TitanTransformer` adds the
`BaseModel` protocol around it without changing a parameter name. Parallelism uses PyTorch's own
APIs the way torchtitan's llama3 does: tensor + sequence parallel plans (`parallelize_module`), activation
checkpointing and per-block `torch.compile` from torchtitan, then FSDP2 `fully_shard` over the
data-parallel mesh (HSDP, i.e. DDP-style replication, when `data_parallel_replicate_degree` > 1), except
for one fp32 process without TP, where it would only copy (`needs_fsdp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torchtitan.distributed.fsdp as tt_fsdp
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)
from torchtitan.config import TORCH_DTYPE_MAP, CompileConfig, ParallelismConfig, TrainingConfig
from torchtitan.distributed import ParallelDims
from torchtitan.distributed.compile import apply_compile
from torchtitan.models.utils import get_dense_model_nparams_and_flops
from torchtitan.protocols import BaseModel
from torchtitan.protocols.model_spec import ModelSpec

from trainer.configs import ModelConfig
from trainer.export import check_tokenizer
from trainer.model import Block, Transformer


class TitanTransformer(Transformer, BaseModel):
    """`Transformer` with torchtitan's model protocol (config build, meta init, FLOP count)."""

    @dataclass(kw_only=True, slots=True)
    class Config(BaseModel.Config):
        model: ModelConfig = field(default_factory=lambda: ModelConfig(8, 1, 1, 1, 8, 8, 8))

        def update_from_config(self, *, config: Any, **kwargs: Any) -> None:
            """Check the run against the model: sequence length and the tokenizer's vocabulary."""
            seq_len = config.training.seq_len
            if seq_len > self.model.max_seq_len:
                raise ValueError(f"training.seq_len {seq_len} exceeds max_seq_len {self.model.max_seq_len}")
            check_tokenizer(Path(config.hf_assets_path), self.model)

        def get_nparams_and_flops(self, model: nn.Module, seq_len: int) -> tuple[int, int]:
            cfg = self.model
            return get_dense_model_nparams_and_flops(
                model, cfg.n_layers, cfg.n_heads, 2 * cfg.head_dim, seq_len, cfg.tie_embeddings
            )

    def __init__(self, config: Config) -> None:
        Transformer.__init__(self, config.model)
        self.config = config

    def init_weights(self, buffer_device: torch.device | None = None, **kwargs: Any) -> None:
        """torchtitan calls this after `to_empty()` on the real device."""
        Transformer.init_weights(self)
        if buffer_device is not None:
            self.rope_cos, self.rope_sin = self.rope_cos.to(buffer_device), self.rope_sin.to(buffer_device)

    def init_states(self, *, buffer_device: torch.device | None = None) -> None:
        self.init_weights(buffer_device=buffer_device)

    def verify_module_protocol(self) -> None:
        """The hand-written submodules are plain nn.Modules on purpose (see BaseModel's docstring)."""


def block_tp_plan() -> dict[str, ParallelStyle]:
    """Megatron tensor parallel with sequence parallel norms, for one Block (torchtitan's Llama plan).

    Between blocks the residual stream is sharded on the sequence (Shard(1), [B, T / tp, dim] per rank),
    so the fp32 RMSNorm intermediates are 1/tp of their replicated size. `PrepareModuleInput` all-gathers
    the norm output once per sub-layer and hands the same Replicate DTensor to q/k/v (or w1/w3): their
    input gradients add up as one Partial tensor and leave in one reduce-scatter, where a separate
    `from_local` per projection would issue one collective each. wo and w2 reduce-scatter back to Shard(1).
    Per block: 2 all-gathers + 2 reduce-scatters forward, the same backward (`collectives_per_block`
    in the dry run); the norm weights' Partial gradients are all-reduced by FSDP when it reduces grads.
    """
    gathered = PrepareModuleInput(
        input_layouts=(Shard(1), None, None, None), desired_input_layouts=(Replicate(), None, None, None)
    )  # Attention.forward(x, cos, sin, mask): only x is a sequence-sharded activation
    return {
        "attention_norm": SequenceParallel(),
        "attention": gathered,
        "attention.wq": ColwiseParallel(),
        "attention.wk": ColwiseParallel(),
        "attention.wv": ColwiseParallel(),
        "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
        "ffn_norm": SequenceParallel(),
        "feed_forward": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
        "feed_forward.w1": ColwiseParallel(),
        "feed_forward.w3": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
    }


def check_tp(cfg: ModelConfig, degree: int, seq_len: int) -> None:
    """Refuse a model or sequence length the TP plan cannot shard evenly."""
    if cfg.tie_embeddings:
        raise ValueError("tensor parallelism needs tie_embeddings=False (the tied head is not sharded)")
    if cfg.n_kv_heads % degree or cfg.ffn_hidden_dim % degree or cfg.vocab_size % degree:
        raise ValueError(
            f"tensor parallel degree {degree} must divide n_kv_heads, ffn_hidden_dim and vocab_size"
        )
    if seq_len % degree:
        raise ValueError(f"tensor parallel degree {degree} must divide seq_len {seq_len} (sequence parallel)")


def apply_tp(model: Transformer, tp_mesh: DeviceMesh) -> None:
    """`block_tp_plan` on every block; the embedding reduce-scatters to sequence shards, the final norm
    is sequence parallel and the head all-gathers the sequence, then its vocabulary shards, so the
    logits (and the loss) are those of the unsharded model. Every parameter lives on the TP mesh."""
    for layer in model.layers.values():
        block = cast(Block, layer)  # TP is applied before activation checkpointing / compile wrap the blocks
        parallelize_module(block, tp_mesh, block_tp_plan())
    parallelize_module(
        model,
        tp_mesh,
        {
            "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
            "norm": SequenceParallel(),
            "output": ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate()),
        },
    )


def apply_fsdp(model: Transformer, dp_mesh: DeviceMesh, training: TrainingConfig, reshard: str) -> None:
    """FSDP2: one unit per block plus the root (embeddings, final norm, head)."""
    policy = MixedPrecisionPolicy(
        param_dtype=TORCH_DTYPE_MAP[training.mixed_precision_param],
        reduce_dtype=TORCH_DTYPE_MAP[training.mixed_precision_reduce],
    )
    reshard_after_forward = tt_fsdp.get_fsdp_reshard_after_forward_policy(reshard, pp_enabled=False)
    for block in model.layers.values():
        fully_shard(block, mesh=dp_mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=dp_mesh, mp_policy=policy)
    # The trainer divides the summed loss by the global token count itself.
    tt_fsdp.disable_fsdp_gradient_division(model)


def parallelize_chakor(
    model: TitanTransformer,
    *,
    parallel_dims: ParallelDims,
    training: TrainingConfig,
    parallelism: ParallelismConfig,
    compile_config: CompileConfig,
    ac_config: Any,
    dump_folder: str,
) -> TitanTransformer:
    """torchtitan's parallelize hook: TP, activation checkpointing, compile, then FSDP/HSDP."""
    if parallelism.spmd_backend != "partial_dtensor":
        raise ValueError("chakor models need --parallelism.spmd_backend partial_dtensor")
    if parallel_dims.tp_enabled:
        check_tp(model.cfg, parallel_dims.tp, training.seq_len)
        apply_tp(model, parallel_dims.get_mesh("tp"))
    if ac_config is not None:
        ac_config.build(dump_folder=dump_folder).apply(model)
    if compile_config.enable and "model" in compile_config.components:
        apply_compile(model, compile_config=compile_config, parallel_dims=parallel_dims)
    if needs_fsdp(parallel_dims, training):
        names = ["dp_replicate", "fsdp"] if parallel_dims.dp_replicate_enabled else ["fsdp"]
        apply_fsdp(model, parallel_dims.get_mesh(names), training, parallelism.fsdp_reshard_after_forward)
    return model


def needs_fsdp(parallel_dims: ParallelDims, training: TrainingConfig) -> bool:
    """Whether FSDP2 has work to do: more than one process (data-parallel shards or replicas, or TP, whose
    sequence-parallel norms' Partial gradients FSDP all-reduces) or mixed precision (FSDP casts).

    One fp32 process is left a plain module: FSDP over a single rank computes the same numbers but
    copies every block's parameters (all-gather) and gradients (reduce-scatter) at each step.
    """
    mixed = training.mixed_precision_param != "float32" or training.mixed_precision_reduce != "float32"
    return parallel_dims.world_size > 1 or mixed


def model_spec(cfg: ModelConfig, flavor: str) -> ModelSpec:
    """The torchtitan ModelSpec for a Chakor model config."""
    return ModelSpec(
        name="chakor",
        flavor=flavor,
        model=TitanTransformer.Config(model=cfg),
        parallelize_fn=parallelize_chakor,
        pipelining_fn=None,
        post_optimizer_build_fn=None,
        state_dict_adapter=None,
    )
