"""`chakor train --slurm`: a Slurm batch script that runs a prepared run folder on N nodes.

The run folder is planned and written where `chakor train --slurm` runs (a login node needs no GPU);
`RUN/train.sbatch` then starts one task per node (`srun --ntasks-per-node=1`), and each task runs
torchrun with `--nnodes $SLURM_NNODES --node-rank $SLURM_NODEID`, a c10d rendezvous on the first node
of the allocation and `--rdzv-id $SLURM_JOB_ID` (trainer.launch's multi-node command with Slurm's
values). The per-task command is single-quoted so that each task expands its own `$SLURM_NODEID`.
The venv, this checkout and the run folder are named by absolute path: all three (and the data shards
the run reads) must be on a filesystem every node mounts.

NCCL defaults, each overridable from the submitting environment (sbatch exports it):
- `NCCL_DEBUG=WARN`: NCCL's warnings and errors reach the job log, not an INFO line per communicator;
- `TORCH_NCCL_ASYNC_ERROR_HANDLING=3`: a failed or timed-out collective tears the process down, so
  srun (`--kill-on-bad-exit=1`) ends the job instead of leaving the other ranks hanging;
- nothing site-specific (NCCL_SOCKET_IFNAME, NCCL_IB_HCA): NCCL's own detection is the safe default.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from trainer.launch import ALLOC_CONF

SBATCH_FILE = "train.sbatch"
RDZV_PORT = 29500


class SubmitError(RuntimeError):
    """sbatch refused the job; the message carries its answer."""


@dataclass(frozen=True)
class SlurmJob:
    """What `#SBATCH` asks for; None leaves the cluster's default."""

    nnodes: int
    gpus_per_node: int
    partition: str | None = None
    time: str | None = None
    account: str | None = None


def task_command(nproc: int, config: str, module: str = "trainer.titan") -> str:
    """The command each Slurm task runs (single-quoted in the script: expanded per task)."""
    return (
        '"$CHAKOR_PYTHON" -m torch.distributed.run --nnodes="$SLURM_NNODES" --node-rank="$SLURM_NODEID" '
        f'--nproc_per_node={nproc} --rdzv-backend=c10d --rdzv-endpoint="$CHAKOR_RDZV_HOST:$CHAKOR_RDZV_PORT" '
        f'--rdzv-id="$SLURM_JOB_ID" -m trainer.titan.run --module {module} --config {config}'
    )


def render_sbatch(run_dir: Path, job: SlurmJob, config: str = "pretrain") -> str:
    """The batch script for run folder `run_dir` (see the module docstring)."""
    run_dir = Path(run_dir).resolve()
    checkout = Path(__file__).resolve().parents[1]
    header = [
        "#!/bin/bash",
        f"#SBATCH --job-name=chakor-{run_dir.name}",
        f"#SBATCH --nodes={job.nnodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={job.gpus_per_node}",
        f"#SBATCH --output={run_dir}/slurm-%j.out",
    ]
    header += [
        f"#SBATCH --{name}={value}"
        for name, value in (("partition", job.partition), ("time", job.time), ("account", job.account))
        if value
    ]
    activate = Path(sys.prefix) / "bin" / "activate"
    body = [
        "set -euo pipefail",
        f"source {shlex.quote(str(activate))}"
        if activate.is_file()
        else "# no venv: the interpreter below is used as is",
        f"export CHAKOR_PYTHON={shlex.quote(sys.executable)}",
        f"export CHAKOR_RUN_DIR={shlex.quote(str(run_dir))}",
        f'export PYTHONPATH={shlex.quote(str(checkout))}"${{PYTHONPATH:+:$PYTHONPATH}}"',
        f'export PYTORCH_ALLOC_CONF="${{PYTORCH_ALLOC_CONF:-{ALLOC_CONF}}}"',
        'export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"',
        'export TORCH_NCCL_ASYNC_ERROR_HANDLING="${TORCH_NCCL_ASYNC_ERROR_HANDLING:-3}"',
        "# The rendezvous: the first node of the allocation hosts torchrun's c10d store.",
        'export CHAKOR_RDZV_HOST="${CHAKOR_RDZV_HOST:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)}"',
        f'export CHAKOR_RDZV_PORT="${{CHAKOR_RDZV_PORT:-{RDZV_PORT}}}"',
        f"cd {shlex.quote(str(run_dir))}",
        f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c {shlex.quote(task_command(job.gpus_per_node, config))}",
    ]
    return "\n".join([*header, "", *body]) + "\n"


def write_sbatch(run_dir: Path, job: SlurmJob, config: str = "pretrain") -> Path:
    """Write `RUN/train.sbatch`; returns its path."""
    path = Path(run_dir) / SBATCH_FILE
    path.write_text(render_sbatch(run_dir, job, config))
    path.chmod(0o755)
    return path


def submit(path: Path) -> str:
    """`sbatch PATH`; returns sbatch's answer ("Submitted batch job N"). Raises FileNotFoundError without
    Slurm, SubmitError when sbatch refuses the job."""
    try:
        done = subprocess.run(["sbatch", str(path)], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"sbatch not found: submit {path} from a Slurm login node") from None
    if done.returncode != 0:
        raise SubmitError(f"sbatch refused {path}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()
