"""`chakor train --dry-run`: build the model on the meta device and apply the real parallelize plan
(trainer.titan.model_spec.parallelize_chakor: TP, activation checkpointing, FSDP2) over a fake process
group of `nproc` ranks, in this one CPU process, with no parameter memory allocated.

torch's "fake" backend (torch.testing._internal.distributed.fake_pg) accepts every collective and
does nothing, so the device mesh, the TP plan and fully_shard run exactly as on rank 0 of a real
job. From the sharded model it reports each parameter's placements and local shape and the measured
parameter count on rank 0, next to the recipe's memory estimate (trainer.memory), and with TP the
collectives one block issues forward and backward (`collectives_per_block`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import parallelize_module
from torch.testing._internal.distributed.fake_pg import FakeStore
from torchtitan.config import CompileConfig, ParallelismConfig, TrainingConfig
from torchtitan.distributed import ParallelDims
from torchtitan.distributed.activation_checkpoint import FullAC

from trainer.configs import ModelConfig
from trainer.memory import estimate_memory
from trainer.model import Block, rope_tables
from trainer.recipe import Plan
from trainer.titan.model_spec import TitanTransformer, block_tp_plan, check_tp, parallelize_chakor

SHOWN = (
    "tok_embeddings.weight",
    "layers.0.attention.wq.weight",
    "layers.0.attention.wo.weight",
    "layers.0.feed_forward.w1.weight",
    "layers.0.feed_forward.w2.weight",
    "layers.0.attention_norm.weight",
    "norm.weight",
    "output.weight",
)


def _placements(param: torch.Tensor) -> dict[str, Any]:
    if not isinstance(param, DTensor):
        return {"global_shape": list(param.shape), "placements": "local", "local_shape": list(param.shape)}
    mesh = param.device_mesh
    names = mesh.mesh_dim_names or tuple(str(i) for i in range(mesh.ndim))
    return {
        "global_shape": list(param.shape),
        "placements": {name: str(p) for name, p in zip(names, param.placements, strict=True)},
        "local_shape": list(param.to_local().shape),
    }


def dry_run(cfg: ModelConfig, plan: Plan, dp_replicate: int = 1) -> dict[str, Any]:
    """Shard `cfg` as `plan` would on `plan.nproc` ranks (seen from rank 0); returns the report."""
    if dist.is_initialized():
        raise RuntimeError("a process group is already initialized; the dry run needs its own")
    nproc, tp = plan.world_size, plan.tensor_parallel
    if tp > 1:
        check_tp(cfg, tp, plan.seq_len)
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=nproc)
    try:
        dims = ParallelDims(
            dp_replicate=dp_replicate, dp_shard=-1, cp=1, tp=tp, pp=1, ep=1, world_size=nproc,
            spmd_backend="partial_dtensor",
        )  # fmt: skip
        dims.build_mesh()
        with torch.device("meta"):
            model = TitanTransformer(TitanTransformer.Config(model=cfg))
        parallelize_chakor(
            model,
            parallel_dims=dims,
            training=TrainingConfig(
                local_batch_size=plan.local_batch_size,
                global_batch_size=plan.global_batch_size,
                seq_len=plan.seq_len,
                mixed_precision_param="bfloat16",
            ),
            parallelism=ParallelismConfig(
                spmd_backend="partial_dtensor",
                tensor_parallel_degree=tp,
                data_parallel_replicate_degree=dp_replicate,
            ),
            compile_config=CompileConfig(enable=False),
            ac_config=FullAC.Config() if plan.activation_checkpointing else None,
            dump_folder=str(Path.cwd()),
        )
        params = dict(model.named_parameters())
        local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in params.values())
        mesh = {
            name: dims.get_mesh(name).size()
            for name in ("dp_replicate", "fsdp", "tp")
            if _enabled(dims, name)
        }
        no_tp: dict[str, dict[str, int]] = {"forward": {}, "backward": {}}
        collectives = block_collectives(cfg, plan, dims.get_mesh("tp")) if tp > 1 else no_tp
    finally:
        dist.destroy_process_group()
    dp = nproc // tp
    estimate = estimate_memory(
        cfg,
        plan.seq_len,
        plan.local_batch_size,
        nproc // (tp * dp_replicate),
        tp,
        plan.activation_checkpointing_mode,
    )
    # Parameters, gradients and AdamW moments as measured on the sharded model (fp32 each).
    estimate = replace(estimate, params=4 * local, grads=4 * local, optimizer=8 * local)
    accumulation = plan.global_batch_size // (plan.local_batch_size * dp)
    return {
        "config": plan.config,
        "world_size": nproc,
        "mesh": mesh,
        "device": "meta",
        "fsdp_units": cfg.n_layers + 1,
        "activation_checkpointing": plan.activation_checkpointing,
        "micro_batch": plan.local_batch_size,
        "gradient_accumulation": accumulation,
        "params_total": cfg.num_params(),
        "params_rank0": local,
        "params_rank0_even_split": cfg.num_params() // (dp * tp),
        "parameters": {name: _placements(params[name]) for name in SHOWN if name in params},
        "collectives_per_block": collectives,
        "memory_per_gpu_gib": estimate.to_gib(),
        "fits_80gb": estimate.fits(),
    }


def block_collectives(cfg: ModelConfig, plan: Plan, tp_mesh: DeviceMesh) -> dict[str, dict[str, int]]:
    """The tensor-parallel collectives of one forward and one backward of one Block, counted by
    `CommDebugMode` on meta tensors of the plan's micro-batch shape (the fake group runs none of them).

    The block gets the plan's TP layout (`block_tp_plan`) alone, without FSDP, so the counts are the
    TP plan's: FSDP's per-block parameter all-gather and gradient reduce-scatter come on top.
    """
    tp = tp_mesh.size()
    with torch.device("meta"):
        block = Block(cfg)
        cos, sin = rope_tables(cfg.head_dim, plan.seq_len, cfg.rope_theta)
        x = torch.empty(plan.local_batch_size, plan.seq_len // tp, cfg.dim, requires_grad=True)
    parallelize_module(block, tp_mesh, block_tp_plan())
    with CommDebugMode() as forward:
        out = block(x, cos, sin, None)
    with CommDebugMode() as backward:
        out.sum().backward()
    return {
        "forward": _op_counts(forward.get_comm_counts()),
        "backward": _op_counts(backward.get_comm_counts()),
    }


def _op_counts(counts: dict[Any, int]) -> dict[str, int]:
    """{"c10d_functional.all_gather_into_tensor": 2} -> {"all_gather_into_tensor": 2}."""
    return {str(op).rsplit(".", 1)[-1]: n for op, n in sorted(counts.items(), key=str)}


def _enabled(dims: ParallelDims, name: str) -> bool:
    if name == "dp_replicate":
        return dims.dp_replicate_enabled
    if name == "tp":
        return dims.tp_enabled
    return True
