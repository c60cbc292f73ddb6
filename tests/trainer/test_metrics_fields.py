"""What a GPU user reads first lands in metrics.jsonl (null on CPU where not measured); the loader refuses
torchtitan's num_workers instead of ignoring it."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.metrics import read_metrics
from trainer.titan.data import ShardDataLoader
from trainer.titan.trainer import JsonlLogger

TORCHTITAN_METRICS = {
    "loss_metrics/global_avg_loss": 2.5,
    "throughput(tps)": 1000.0,
    "mfu(%)": 41.0,
    "memory/max_reserved(GiB)": 61.25,
    "memory/num_alloc_retries": 3,
    "memory/num_ooms": 0,
    "time_metrics/data_loading(%)": 1.5,
}


@pytest.mark.parametrize("on_gpu", [True, False])
def test_memory_retries_ooms_and_data_loading_share_are_recorded(tmp_path: Path, on_gpu: bool) -> None:
    JsonlLogger(tmp_path, on_gpu=on_gpu).log(dict(TORCHTITAN_METRICS), step=7)
    (record,) = read_metrics(tmp_path / "metrics.jsonl")
    assert (record["step"], record["loss"], record["data_loading_pct"]) == (7, 2.5, 1.5)
    if on_gpu:
        assert (
            record["memory_max_reserved_gib"],
            record["alloc_retries"],
            record["ooms"],
            record["mfu"],
        ) == (61.25, 3, 0, 41)
    else:  # torchtitan reports -1 without device statistics: not measured, so null (and no MFU)
        assert (record["memory_max_reserved_gib"], record["alloc_retries"], record["ooms"]) == (
            None,
            None,
            None,
        )
        assert "mfu" not in record


def test_the_loader_refuses_workers(data_dir: Path) -> None:
    config = ShardDataLoader.Config(dataset_path=str(data_dir), num_workers=2)
    with pytest.raises(ValueError, match=r"num_workers=2: .* use num_workers=0"):
        ShardDataLoader(config, dp_world_size=1, dp_rank=0, seq_len=32, local_batch_size=2)
    pinned = ShardDataLoader(
        ShardDataLoader.Config(dataset_path=str(data_dir), pin_memory=True),
        dp_world_size=1,
        dp_rank=0,
        seq_len=32,
        local_batch_size=2,
    )
    assert pinned.pin_memory is True
