"""`chakor train --compile --ac --dp-replicate N`: the flags reach torchtitan's job config and the device mesh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainer.configs import ModelConfig, TrainConfig
from trainer.titan.config_registry import RUN_DIR_ENV, pretrain
from trainer.train import prepare_run

from .test_cli import app


def test_dry_run_with_dp_replicate_and_ac_builds_an_hsdp_mesh() -> None:
    result = CliRunner().invoke(
        app, ["train", "--config", "tiny", "--nproc", "4", "--dp-replicate", "2", "--ac", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    dry = json.loads(result.output)["dry_run"]
    assert dry["mesh"] == {"dp_replicate": 2, "fsdp": 2}
    assert dry["activation_checkpointing"] is True
    assert dry["params_rank0"] * 2 == dry["params_total"]  # sharded over 2, replicated over the other 2
    assert {p["placements"]["dp_replicate"] for p in dry["parameters"].values()} == {"R"}


@pytest.mark.parametrize("flags", [True, False])
def test_the_run_folder_carries_the_flags_into_torchtitans_config(
    tmp_path: Path,
    data_dir: Path,
    tokenizer_dir: Path,
    micro_cfg: ModelConfig,
    monkeypatch: pytest.MonkeyPatch,
    flags: bool,
) -> None:
    recipe = TrainConfig(
        steps=2,
        seq_len=32,
        compile=flags,
        activation_checkpointing=flags,
        data_parallel_replicate=2 if flags else 1,
    )
    from torchtitan.distributed.activation_checkpoint import FullAC  # after trainer.titan's shims

    run_dir = prepare_run(tmp_path / "run", data_dir, micro_cfg, tokenizer=tokenizer_dir, recipe=recipe)
    monkeypatch.setenv(RUN_DIR_ENV, str(run_dir))
    config = pretrain()
    assert config.compile.enable is flags
    assert (
        isinstance(config.activation_checkpoint, FullAC.Config)
        if flags
        else config.activation_checkpoint is None
    )
    assert config.parallelism.data_parallel_replicate_degree == (2 if flags else 1)
