"""The memory-mapped pretraining loader: shards read window by window, the seeded order, exact resume."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from trainer.titan.data import ArrayTokens, ShardTokens, TokenWindows, WindowOrder


def write_split(data_dir: Path, sizes: list[int], dtype: str = "uint16") -> np.ndarray:
    """Shards of the given sizes holding consecutive ids; returns their concatenation."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tokens = (np.arange(sum(sizes)) % 60_000).astype(dtype)
    names, start = [], 0
    for index, size in enumerate(sizes):
        names.append(f"train-{index:05d}.bin")
        tokens[start : start + size].astype(np.dtype(dtype).newbyteorder("<")).tofile(data_dir / names[-1])
        start += size
    manifest = {"dtype": dtype, "tokenizer_sha256": "x", "splits": {"train": {"shards": names}}}
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    return tokens


def test_reads_match_the_concatenated_split_across_shard_boundaries(tmp_path: Path) -> None:
    tokens = write_split(tmp_path, [100, 0, 37, 250], dtype="uint32")
    shards = ShardTokens(tmp_path, "train")
    assert len(shards) == 387
    for start, stop in [(0, 10), (95, 140), (99, 101), (130, 387), (0, 387), (386, 387)]:
        assert shards.read(start, stop).tolist() == tokens[start:stop].tolist(), (start, stop)
    assert shards.read(0, 5).dtype == np.int64


def test_memmap_windows_equal_in_memory_windows_and_resume_exactly(tmp_path: Path) -> None:
    tokens = write_split(tmp_path, [500, 333, 700])
    memmapped = TokenWindows(ShardTokens(tmp_path, "train"), 16, dp_rank=1, dp_world_size=2, seed=7)
    in_memory = TokenWindows(ArrayTokens(tokens), 16, dp_rank=1, dp_world_size=2, seed=7)
    first = [(x["input"].tolist(), y.tolist()) for x, y in islice(memmapped, 60)]  # 47 per rank: into epoch 2
    assert first == [(x["input"].tolist(), y.tolist()) for x, y in islice(in_memory, 60)]
    assert all(y[:-1] == x[1:] for x, y in first)
    state = memmapped.state_dict()
    assert state == {"epoch": 1, "position": 13}
    resumed = TokenWindows(ShardTokens(tmp_path, "train"), 16, dp_rank=1, dp_world_size=2, seed=7)
    resumed.load_state_dict(state)
    assert [x["input"].tolist() for x, _ in islice(resumed, 20)] == [
        x["input"].tolist() for x, _ in islice(memmapped, 20)
    ]


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4097])
def test_window_order_is_a_permutation_per_seed_and_epoch(n: int) -> None:
    orders = [[WindowOrder(n, seed, epoch)[i] for i in range(n)] for seed, epoch in [(0, 0), (0, 1), (5, 0)]]
    assert all(sorted(order) == list(range(n)) for order in orders)
    if n >= 17:
        assert orders[0] != orders[1] and orders[0] != orders[2]


def test_missing_and_ragged_shards_are_named(tmp_path: Path) -> None:
    write_split(tmp_path, [10, 10])
    (tmp_path / "train-00001.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match=r"train-00001.bin: 7 bytes is not a whole number of uint16 tokens"):
        ShardTokens(tmp_path, "train")
    (tmp_path / "train-00001.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"manifest.json: shard .*train-00001.bin is missing"):
        ShardTokens(tmp_path, "train")
    with pytest.raises(ValueError, match=r"split 'val' is empty"):
        ShardTokens(tmp_path, "val")
