"""Two "nodes" on this host: two `chakor train` processes joined by torchrun's c10d rendezvous (gloo),
one run of world size 2, the same losses on both ranks, checkpoints, and a two-node resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.metrics import read_metrics
from trainer.run_folder import checkpoint_steps

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEP_LOSS = re.compile(r"\] .* - step:\s+(\d+)\s+loss:\s+([0-9.]+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_nodes(out: Path, data: Path, tokenizer: Path, *args: str) -> None:
    """Start node 1 and node 0 of one job and wait for both; fail with their output."""
    endpoint = f"127.0.0.1:{_free_port()}"
    common = [
        sys.executable, "-m", "chakor", "train", "--data", str(data), "--out", str(out), "--tokenizer",
        str(tokenizer), "--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", endpoint, *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    nodes = [
        subprocess.Popen(
            [*common, "--node-rank", str(rank)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (1, 0)  # node 1 first: it must wait for node 0's run folder
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(outputs)


def _logged_losses(log: Path) -> dict[int, str]:
    """Step -> loss as each rank's torchtitan logger printed it."""
    return {int(m[1]): m[2] for m in STEP_LOSS.finditer(log.read_text())}


def test_two_nodes_train_one_run_and_resume(tmp_path: Path, data_dir: Path, tokenizer_dir: Path) -> None:
    out = tmp_path / "run"
    # 2 micro-batches per step: the replica all-reduce runs on the second only (ChakorTrainer).
    recipe = [
        "--config",
        "tiny",
        "--steps",
        "3",
        "--seq-len",
        "64",
        "--batch-size",
        "2",
        "--global-batch-size",
        "8",
    ]
    _two_nodes(out, data_dir, tokenizer_dir, *recipe, "--checkpoint-every", "2", "--sample-tokens", "0")
    run = json.loads((out / "run.json").read_text())
    assert (run["world_size"], run["nnodes"], run["nproc_per_node"]) == (2, 2, 1)
    assert "--nnodes=2" in run["launch_command"] and "--rdzv-backend=c10d" in run["launch_command"]
    assert run["train"]["data_parallel_replicate"] == 2  # HSDP by default across nodes: one replica per node
    losses = {r["step"]: r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r}
    assert sorted(losses) == [1, 2, 3]
    # 2 ranks x 2 micro-batches x 2 sequences x 64 tokens per step: both nodes' processes trained one run.
    tokens = [r["tokens"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert tokens == [512.0 * s for s in range(1, 4)]
    node0, node1 = _logged_losses(out / "train.log"), _logged_losses(out / "train-node1.log")
    assert sorted(node0) == [1, 2, 3] and node0 == node1
    assert checkpoint_steps(out) == [2, 3]

    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed, ignore=shutil.ignore_patterns("step-3", "*.log"))
    _two_nodes(resumed, data_dir, tokenizer_dir, "--resume")
    again = {r["step"]: r["loss"] for r in read_metrics(resumed / "metrics.jsonl") if "loss" in r}
    assert again == losses  # step 3 retrained from step 2's checkpoint, exactly
    assert checkpoint_steps(resumed) == [2, 3]
