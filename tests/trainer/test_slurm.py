"""`chakor train --slurm`: the batch script's contents, and its per-task torchrun line run here with
the Slurm variables a one-node allocation would set."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainer.metrics import read_metrics
from trainer.run_folder import checkpoint_steps

from .test_cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
RECIPE = ["--config", "tiny", "--steps", "2", "--seq-len", "64", "--batch-size", "2", "--sample-tokens", "0"]


def _slurm(out: Path, data: Path, tokenizer: Path, *args: str) -> str:
    cmd = [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--tokenizer",
        str(tokenizer),
        *RECIPE,
        "--slurm",
        *args,
    ]
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_sbatch_script_starts_one_torchrun_per_node(
    tmp_path: Path, data_dir: Path, tokenizer_dir: Path
) -> None:
    out = tmp_path / "run"
    printed = _slurm(
        out,
        data_dir,
        tokenizer_dir,
        "--nnodes",
        "4",
        "--nproc",
        "8",
        "--partition",
        "gpu",
        "--time",
        "48:00:00",
        "--account",
        "lab",
    )
    script = (out / "train.sbatch").read_text()
    assert f"sbatch {out / 'train.sbatch'}" in printed.replace("\n", "")
    for line in (
        "#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8", "#SBATCH --partition=gpu",
        "#SBATCH --time=48:00:00", "#SBATCH --account=lab", f"#SBATCH --output={out}/slurm-%j.out",
        f"export CHAKOR_RUN_DIR={out}", 'export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"',
        'export PYTORCH_ALLOC_CONF="${PYTORCH_ALLOC_CONF:-expandable_segments:True}"',
    ):  # fmt: skip
        assert line in script.splitlines(), line
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    task = shlex.split(srun)[-1]  # single-quoted: each task expands its own SLURM_NODEID
    assert '--nnodes="$SLURM_NNODES" --node-rank="$SLURM_NODEID" --nproc_per_node=8' in task
    assert (
        '--rdzv-backend=c10d --rdzv-endpoint="$CHAKOR_RDZV_HOST:$CHAKOR_RDZV_PORT" --rdzv-id="$SLURM_JOB_ID"'
        in task
    )
    assert "scontrol show hostnames" in script  # the rendezvous on the allocation's first node
    run = json.loads((out / "run.json").read_text())
    assert (run["world_size"], run["nnodes"], run["launch_command"]) == (
        32,
        4,
        f"sbatch {out / 'train.sbatch'}",
    )
    assert run["train"]["data_parallel_replicate"] == 4


@pytest.mark.slow
def test_the_scripts_torchrun_line_trains_with_slurms_variables(
    tmp_path: Path, data_dir: Path, tokenizer_dir: Path
) -> None:
    out = tmp_path / "run"
    _slurm(out, data_dir, tokenizer_dir, "--nnodes", "1", "--gpus-per-node", "1", "--checkpoint-every", "1")
    script = (out / "train.sbatch").read_text()
    preamble, srun = script.split("\nsrun ")
    task = shlex.split("srun " + srun)[-1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    slurm = {
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "4242",
        "CHAKOR_RDZV_HOST": "127.0.0.1",
        "CHAKOR_RDZV_PORT": str(port),
    }
    env = {**os.environ, **slurm}
    done = subprocess.run(
        ["bash", "-c", f"{preamble}\n{task}"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r] == [1, 2]
    assert checkpoint_steps(out) == [1, 2]


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="a real Slurm would receive the job")
def test_submit_without_slurm_says_so(tmp_path: Path, data_dir: Path, tokenizer_dir: Path) -> None:
    cmd = [
        "train",
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path / "r"),
        "--tokenizer",
        str(tokenizer_dir),
        *RECIPE,
        "--slurm",
        "--submit",
    ]
    result = runner.invoke(app, cmd)
    assert result.exit_code == 2 and "sbatch not found: submit" in result.output
    bad = runner.invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "s"), "--submit"])
    assert bad.exit_code == 2 and "--submit needs --slurm" in bad.output
