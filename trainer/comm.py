"""Seconds per optimizer step, compute and communication, estimated from the model and the layout (no torch).

`trainer.recipe` prints these in `--plan` and uses them to pick the default layout (HSDP across nodes)
and the checkpoint interval. The assumed machine, stated once:

- compute: H100 SXM dense bf16 peak 989 TFLOP/s at MFU 0.40 (well-tuned FSDP runs of 7-70B models report
  0.38-0.55 on H100; 0.40 keeps the step-time estimate on the slow side). Model FLOPs per token are
  6 N + 12 L d T (PaLM's formula: matmuls plus causal attention scores, counted unmasked), times 4/3 with
  full activation checkpointing (one more forward) and 7/6 with selective AC (every second matmul's
  forward again);
- NVLink inside a node: 450 GB/s per GPU each way (NVLink 4, 900 GB/s bidirectional);
- the network between nodes: 400 Gb/s = 50 GB/s per GPU (one NDR InfiniBand / RoCE NIC per GPU); a
  collective whose group spans nodes runs at that rate (NCCL's rings and trees cross it).

Traffic per GPU, ring algorithms (each GPU sends (n-1)/n of the buffer for all-gather/reduce-scatter,
twice that for all-reduce), with the mesh laid out as torchtitan does (tp innermost, then the FSDP
shard dimension, then the replicas outermost), so a group crosses nodes once its span exceeds a node:
- FSDP over S ranks, every micro-batch: all-gather of the bf16 parameters in forward and again in
  backward (blocks reshard after forward), reduce-scatter of the fp32 gradients;
- HSDP/DDP over R replicas: all-reduce of the fp32 gradient shard once per optimizer step (the trainer
  skips it on the non-final micro-batches of gradient accumulation);
- TP over t ranks, every micro-batch: two all-reduces of the bf16 activations per block in forward
  and two in backward (the PrepareModuleInput plan), two more with full AC's recomputed forward.
The sum is an upper bound on the exposed time: FSDP prefetches the next block's gather while computing,
so a step takes about max(compute, communication) when communication is the smaller.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.configs import ModelConfig

PEAK_FLOPS = 989e12
MFU = 0.40
NVLINK_BYTES_PER_S = 450e9
NETWORK_BYTES_PER_S = 400e9 / 8
RECOMPUTE = {"none": 1.0, "selective": 7 / 6, "full": 4 / 3}


@dataclass(frozen=True)
class Layout:
    """The device mesh of a run: `nnodes` x `nproc` GPUs as replicate x shard x tp."""

    nproc: int
    nnodes: int
    tp: int
    replicate: int

    def __post_init__(self) -> None:
        if self.nproc % self.tp:
            raise ValueError(
                f"--nproc {self.nproc} is not a multiple of --tp {self.tp} (TP stays inside a node)"
            )
        if (self.world // self.tp) % self.replicate:
            raise ValueError(
                f"--dp-replicate {self.replicate} does not divide the {self.world // self.tp} data-parallel ranks"
            )

    @property
    def world(self) -> int:
        return self.nproc * self.nnodes

    @property
    def dp(self) -> int:
        """Data-parallel ranks (each reads its own batch)."""
        return self.world // self.tp

    @property
    def shard(self) -> int:
        """Ranks of one FSDP group."""
        return self.dp // self.replicate

    def crosses_nodes(self, span: int) -> bool:
        """Whether a group whose ranks span `span` consecutive global ranks leaves a node."""
        return span > self.nproc

    def to_dict(self) -> dict[str, int]:
        return {
            "nnodes": self.nnodes, "nproc_per_node": self.nproc, "world_size": self.world,
            "tensor_parallel": self.tp, "data_parallel_shard": self.shard, "data_parallel_replicate": self.replicate,
        }  # fmt: skip


@dataclass(frozen=True)
class StepTime:
    """Estimated seconds of one optimizer step on one GPU."""

    compute: float
    comm_nvlink: float
    comm_network: float

    @property
    def comm(self) -> float:
        return self.comm_nvlink + self.comm_network

    @property
    def step(self) -> float:
        """With communication overlapped by compute (FSDP prefetch), the larger of the two."""
        return max(self.compute, self.comm)

    def to_dict(self) -> dict[str, object]:
        return {
            "compute_seconds_per_step": round(self.compute, 3),
            "comm_seconds_per_step": round(self.comm, 3),
            "comm_seconds_by_link": {"nvlink": round(self.comm_nvlink, 3), "network": round(self.comm_network, 3)},
            "communication_bound": self.comm > self.compute,
            "assumed": {
                "peak_tflops_bf16": PEAK_FLOPS / 1e12, "mfu": MFU,
                "nvlink_gb_per_s": NVLINK_BYTES_PER_S / 1e9, "network_gbit_per_s": NETWORK_BYTES_PER_S * 8 / 1e9,
            },
        }  # fmt: skip


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token without recomputation: 6 N (embedding lookup excluded) + 12 L d T."""
    matmul_params = cfg.num_params() - cfg.vocab_size * cfg.dim * (0 if cfg.tie_embeddings else 1)
    return 6.0 * matmul_params + 12.0 * cfg.n_layers * cfg.dim * seq_len


def step_time(
    cfg: ModelConfig, layout: Layout, seq_len: int, micro_batch: int, accumulation: int, ac_mode: str
) -> StepTime:
    """Estimated compute and communication seconds per optimizer step (see the module docstring)."""
    links = {True: 0.0, False: 0.0}  # crosses nodes -> bytes

    def send(nbytes: float, span: int) -> None:
        links[layout.crosses_nodes(span)] += nbytes

    tokens = micro_batch * seq_len
    global_tokens = tokens * layout.dp * accumulation
    compute = flops_per_token(cfg, seq_len) * RECOMPUTE[ac_mode] * global_tokens / layout.world
    params = cfg.num_params() / layout.tp
    s, r, t = layout.shard, layout.replicate, layout.tp
    if s > 1:
        send(accumulation * (2 * 2 + 4) * params * (s - 1) / s, s * t)
    if r > 1:
        send(2 * 4 * (params / s) * (r - 1) / r, layout.world)
    if t > 1:
        per_block = 4 + (2 if ac_mode == "full" else 0)
        send(accumulation * cfg.n_layers * per_block * 2 * (t - 1) / t * 2 * tokens * cfg.dim, t)
    return StepTime(
        compute=compute / (PEAK_FLOPS * MFU),
        comm_nvlink=links[False] / NVLINK_BYTES_PER_S,
        comm_network=links[True] / NETWORK_BYTES_PER_S,
    )
