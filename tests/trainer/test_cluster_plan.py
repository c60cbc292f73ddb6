"""The plan at cluster scale: HSDP across nodes and its communication estimate, the 7B SFT that fits,
the memory model's measured figures, and the launch command lines (no torchrun started here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainer.comm import NETWORK_BYTES_PER_S, Layout, step_time
from trainer.configs import MODEL_CONFIGS, ModelConfig, TrainConfig
from trainer.launch import Nodes, check_visible_gpus, launch_env, torchrun_command
from trainer.memory import GIB, LOGIT_BYTES, estimate_memory, layer_bytes
from trainer.recipe import plan_sft
from trainer.titan.config_registry import RUN_DIR_ENV, checkpointing, pretrain
from trainer.train import prepare_run

from .test_cli import app

runner = CliRunner()
SEVEN_B = MODEL_CONFIGS["7b"]


def run_json(*args: str) -> dict:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_default_7b_plan_on_8_nodes_is_hsdp_and_not_communication_bound() -> None:
    plan = run_json("train", "--config", "7b", "--nnodes", "8", "--nproc", "8", "--plan")
    assert (plan["world_size"], plan["data_parallel_shard"], plan["data_parallel_replicate"]) == (64, 8, 8)
    assert (
        plan["comm_seconds_per_step"] < plan["compute_seconds_per_step"] and not plan["communication_bound"]
    )
    assert plan["assumed"] == {
        "peak_tflops_bf16": 989.0, "mfu": 0.4, "nvlink_gb_per_s": 450.0, "network_gbit_per_s": 400.0,
    }  # fmt: skip
    # Across nodes only the once-per-step all-reduce of each 1/8 gradient shard (fp32): 2 x 7/8 x 4 N / 8.
    network_bytes = 2 * 7 / 8 * 4 * SEVEN_B.num_params() / 8
    assert plan["comm_seconds_by_link"]["network"] == pytest.approx(
        network_bytes / NETWORK_BYTES_PER_S, abs=1e-3
    )
    # FSDP over all 64 GPUs instead moves the whole model over the network on every micro-batch.
    flat = run_json(
        "train", "--config", "7b", "--nnodes", "8", "--nproc", "8", "--dp-replicate", "1", "--plan"
    )
    assert flat["data_parallel_shard"] == 64 and flat["communication_bound"]
    assert flat["comm_seconds_per_step"] > 5 * plan["comm_seconds_per_step"]


def test_the_replica_all_reduce_is_counted_once_per_step() -> None:
    layout = Layout(nproc=8, nnodes=8, tp=1, replicate=8)
    one = step_time(SEVEN_B, layout, 4096, 2, 1, "none")
    eight = step_time(SEVEN_B, layout, 4096, 2, 8, "none")
    assert eight.comm_network == pytest.approx(one.comm_network)  # accumulation does not repeat it
    assert eight.comm_nvlink == pytest.approx(8 * one.comm_nvlink)  # FSDP gathers every micro-batch
    assert eight.compute == pytest.approx(8 * one.compute)


def test_a_7b_sft_on_8_nodes_fits_with_a_fine_tuning_lr() -> None:
    plan = run_json("sft", "--config", "7b", "--nnodes", "8", "--nproc", "8", "--plan")
    assert plan["kind"] == "sft" and plan["world_size"] == 64
    assert plan["memory_per_gpu_gib"]["total"] <= 72 and plan["fits_80gb"]
    assert plan["lr"] <= 5e-5 and plan["lr"] == 2e-5 and "Llama-2-chat" in plan["rules"]["lr"]
    assert plan["local_batch_size"] >= 1 and plan["data_parallel_replicate"] == 8
    assert plan["comm_seconds_per_step"] < plan["compute_seconds_per_step"]
    # The seed's micro-batch of 4 x 4096 at TP=1 would need ~99 GiB of activations alone: re-planned.
    assert estimate_memory(SEVEN_B, 4096, 4, 8, 1).activations / GIB > 99
    small = run_json("sft", "--config", "small", "--plan")
    assert small["lr"] == pytest.approx(0.1 * run_json("train", "--config", "small", "--plan")["lr"])


def test_sft_keeps_a_base_layout_that_fits_and_replans_one_that_does_not() -> None:
    seed_like = TrainConfig(seq_len=4096, local_batch_size=4, lr=3e-4, tensor_parallel=8)
    kept = plan_sft("7b", SEVEN_B, seed_like, nproc=8, nnodes=8)
    assert (kept.tensor_parallel, kept.local_batch_size, kept.fits_80gb) == (8, 4, True)
    replanned = plan_sft("7b", SEVEN_B, seed_like, nproc=8, nnodes=8, tensor_parallel=1)
    assert replanned.local_batch_size == 2 and replanned.fits_80gb  # 4 x 4096 at TP=1 would not fit
    assert "largest power of two <= the base run's 4" in replanned.rules["local_batch_size"]


def test_sft_takes_the_parallel_flags() -> None:
    plan = run_json("sft", "--config", "7b", "--nproc", "8", "--tp", "8", "--ac-mode", "selective", "--plan")
    assert (plan["tensor_parallel"], plan["activation_checkpointing_mode"]) == (8, "selective")
    assert (
        run_json("sft", "--config", "tiny", "--eval-every", "7", "--plan")["recipe"]
        == "sft + overrides (eval_every)"
    )
    result = runner.invoke(app, ["sft", "--config", "7b", "--ac-mode", "some", "--plan"])
    assert result.exit_code == 2 and "--ac-mode must be full or selective" in result.output
    result = runner.invoke(app, ["sft", "--config", "tiny"])
    assert result.exit_code == 2 and "--base, --data and --out are needed" in result.output


def test_the_memory_model_matches_the_measured_figures() -> None:
    # Measured on this block: ~203 KB saved per token per layer at TP=1; the sequence-parallel norms
    # split over TP with the rest, so TP=8 keeps an eighth of it per rank.
    assert layer_bytes(SEVEN_B, 1) / 1024 == pytest.approx(203, rel=0.03)
    assert layer_bytes(SEVEN_B, 8) == layer_bytes(SEVEN_B, 1) // 8
    assert LOGIT_BYTES == 14
    eager, selective, full = (
        estimate_memory(SEVEN_B, 4096, 2, 8, 1, m).activations for m in ("none", "selective", "full")
    )
    assert eager > selective > full


def test_big_runs_checkpoint_every_half_hour_and_log_every_ten_steps() -> None:
    plan = run_json("train", "--config", "7b", "--nnodes", "8", "--nproc", "8", "--plan")
    assert plan["checkpoint_interval_minutes"] == pytest.approx(30, abs=1)
    assert plan["checkpoint_every"] * plan["compute_seconds_per_step"] == pytest.approx(1800, rel=0.02)
    assert plan["log_freq"] == 10 and run_json("train", "--config", "small", "--plan")["log_freq"] == 1


def test_torchrun_command_lines() -> None:
    assert torchrun_command(2, Nodes(), "r", "pretrain", "trainer.titan")[3:5] == [
        "--standalone",
        "--nproc_per_node=2",
    ]
    cmd = torchrun_command(8, Nodes(4, 2, "node0:29500"), "job7", "sft", "trainer.titan")
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[3:9] == [
        "--nnodes=4", "--node-rank=2", "--nproc_per_node=8", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29500",
        "--rdzv-id=job7",
    ]  # fmt: skip
    assert "--standalone" not in cmd and cmd[-2:] == ["--config", "sft"]
    assert launch_env(Path("/r"), 1)["PYTORCH_ALLOC_CONF"] == "expandable_segments:True"
    env = launch_env(Path("/r"), 1)
    assert (env["MALLOC_MMAP_MAX_"], env["MALLOC_TRIM_THRESHOLD_"]) == ("0", str(16 << 30))
    on_gpus = launch_env(Path("/r"), 8, cpu_only=False)
    assert "MALLOC_MMAP_MAX_" not in on_gpus and "MALLOC_TRIM_THRESHOLD_" not in on_gpus


def test_bad_launches_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"--nproc 16 exceeds the 8 GPU\(s\) visible on this node; to use 16 GPUs, run on 2 nodes",
    ):
        check_visible_gpus(16, Nodes(), 8)
    check_visible_gpus(16, Nodes(), None)  # CPU (gloo): any number of processes
    for args, message in [
        (["--nnodes", "2"], "--nnodes 2 needs --rdzv-endpoint HOST:PORT"),
        (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank 2 must be in [0, 1]"),
        (["--nnodes", "2", "--rdzv-endpoint", "nohost"], "--rdzv-endpoint must be HOST:PORT"),
    ]:
        result = runner.invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_the_config_registry_wires_selective_ac_and_async_checkpoints(
    tmp_path: Path,
    data_dir: Path,
    tokenizer_dir: Path,
    micro_cfg: ModelConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torchtitan.distributed.activation_checkpoint import SelectiveAC  # after trainer.titan's shims

    recipe = TrainConfig(
        steps=2,
        seq_len=32,
        activation_checkpointing=True,
        activation_checkpointing_mode="selective",
        log_freq=5,
    )
    monkeypatch.setenv(
        RUN_DIR_ENV,
        str(prepare_run(tmp_path / "run", data_dir, micro_cfg, tokenizer=tokenizer_dir, recipe=recipe)),
    )
    config = pretrain()
    assert isinstance(config.activation_checkpoint, SelectiveAC.Config)
    assert (config.metrics.log_freq, config.checkpoint.keep_latest_k, config.checkpoint.async_mode) == (
        5,
        2,
        "disabled",
    )
    assert checkpointing(recipe, on_gpu=True).async_mode == "async_with_pinned_mem"
