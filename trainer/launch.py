"""torchrun command lines for a training run: one node, N nodes started by hand, or a Slurm allocation.

One node runs `torchrun --standalone --nproc_per_node=P`. N nodes each run the same `chakor train` (or
`chakor sft`) with `--nnodes N --node-rank R --rdzv-endpoint HOST:PORT`, which becomes torchrun's c10d
rendezvous (`--rdzv-backend c10d`); `--nproc` stays per node and the world size is N x P. The run folder,
the data and the tokenizer must be on a filesystem every node sees: node 0 writes run.json before it
joins the rendezvous, and the other nodes' workers read it only after the rendezvous completes, so they
never see a half-written or a previous run's recipe.

The launch environment sets `PYTORCH_ALLOC_CONF=expandable_segments:True` (unless the user set it):
segments that grow in place instead of new fixed-size blocks, which is what keeps the caching allocator's
fragmentation (and its retries before an OOM) down when the sequence layout varies step to step.

On a node without GPUs it also keeps glibc's malloc off mmap (`MALLOC_MMAP_MAX_=0`, and a trim threshold high enough that freed memory
stays in the heap), unless the user set either: glibc serves every block over its mmap threshold (at most
32 MiB) with a fresh mapping, page-faulted in on first touch and unmapped on free, and a CPU step frees and
re-allocates the same buffers every step (the `tiny` model's 2048 x 4096 fp32 logits are 33.5 MB). Measured on
the quickstart's pretraining step (1 thread, CPU time): 342 -> 296 ms, of which kernel time 60 -> 3 ms; the
heap then stays at the step's peak, which the next step needs again.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.run_folder import LOG_FILE

ALLOC_CONF = "expandable_segments:True"
# glibc malloc: no mmap, and no trimming below 16 GiB of free heap (see the module docstring).
HOST_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(16 << 30)}


@dataclass(frozen=True)
class Nodes:
    """Where this launcher sits in a multi-node job (the defaults: a single node)."""

    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.nnodes < 1:
            raise ValueError(f"--nnodes must be at least 1, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(
                f"--node-rank {self.node_rank} must be in [0, {self.nnodes - 1}] for --nnodes {self.nnodes}"
            )
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT (a host of node 0)")
        if self.rdzv_endpoint is not None:
            host, _, port = self.rdzv_endpoint.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"--rdzv-endpoint must be HOST:PORT, got {self.rdzv_endpoint!r}")

    @property
    def standalone(self) -> bool:
        """torchrun's `--standalone` (a rendezvous on a free local port) serves only a one-node job."""
        return self.nnodes == 1 and self.rdzv_endpoint is None


def torchrun_options(nproc: int, nodes: Nodes, rdzv_id: str) -> list[str]:
    """torchrun's own options: `--standalone` on one node, else a c10d rendezvous.

    `rdzv_id` must be the same on every node of one job (the run folder's name, or $SLURM_JOB_ID).
    With c10d, torchrun assigns node ranks in the order nodes join; `--node-rank` is passed along so
    that the log names stay what the user typed.
    """
    if nodes.standalone:
        return ["--standalone", f"--nproc_per_node={nproc}"]
    return [
        f"--nnodes={nodes.nnodes}", f"--node-rank={nodes.node_rank}", f"--nproc_per_node={nproc}",
        "--rdzv-backend=c10d", f"--rdzv-endpoint={nodes.rdzv_endpoint}", f"--rdzv-id={rdzv_id}",
    ]  # fmt: skip


def torchrun_command(
    nproc: int, nodes: Nodes, rdzv_id: str, config: str, module: str, extra_args: tuple[str, ...] = ()
) -> list[str]:
    """The full command a node runs: torchrun on trainer.titan.run with torchtitan config `config`."""
    return [
        sys.executable, "-m", "torch.distributed.run", *torchrun_options(nproc, nodes, rdzv_id),
        "-m", "trainer.titan.run", "--module", module, "--config", config, *extra_args,
    ]  # fmt: skip


def check_visible_gpus(nproc: int, nodes: Nodes, visible: int | None) -> None:
    """Refuse more processes per node than GPUs (`visible`: CUDA's device count, None without CUDA).

    On one node every rank >= the GPU count would fail on its device ordinal after minutes of start-up;
    on CPU (gloo) any number of processes runs.
    """
    if visible is not None and nproc > visible:
        hint = (
            f"to use {nproc} GPUs, run on {-(-nproc // visible)} nodes with --nnodes N --nproc {visible}"
            if nodes.standalone
            else "--nproc counts processes per node"
        )
        raise ValueError(f"--nproc {nproc} exceeds the {visible} GPU(s) visible on this node; {hint}")


def launch_env(run_dir: Path, nproc: int, cpu_only: bool = True) -> dict[str, str]:
    """The environment torchrun starts with: this checkout first on PYTHONPATH, one share of the cores
    per process for OpenMP, and the allocator settings the module docstring gives the reasons for. The
    host malloc settings apply only to a node without GPUs (`cpu_only`): on a GPU node the step's buffers
    are CUDA memory, and a host heap that is never trimmed would only hold on to the data loaders' and
    checkpoint staging's memory."""
    threads = max(1, (os.cpu_count() or 1) // nproc)
    env = {**os.environ, "CHAKOR_RUN_DIR": str(run_dir), "OMP_NUM_THREADS": str(threads)}
    env.setdefault("PYTORCH_ALLOC_CONF", ALLOC_CONF)
    if cpu_only and not any(name in env for name in HOST_MALLOC):
        env.update(HOST_MALLOC)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    return env


def log_name(nodes: Nodes) -> str:
    """Each node's torchrun output: `train.log` on node 0, `train-node{R}.log` on the others."""
    return LOG_FILE if nodes.node_rank == 0 else f"train-node{nodes.node_rank}.log"


def launch_record(nproc: int, nnodes: int, command: str) -> dict[str, Any]:
    """What run.json records about the launch: the world and node 0's command."""
    return {
        "world_size": nproc * nnodes,
        "nnodes": nnodes,
        "nproc_per_node": nproc,
        "launch_command": command,
    }
