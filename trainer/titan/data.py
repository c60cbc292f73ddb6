"""torchtitan dataloaders over Chakor data: memory-mapped pretraining shards and packed SFT conversations.

Both yield `({"input": ids[:-1], ...}, labels)` rows of `seq_len + 1` tokens; a label is -100 (torchtitan's
IGNORE_INDEX) where no loss is taken. Position in the data (epoch, position) is checkpointed, and the
order is a pure function of (seed, epoch), so `--resume` continues exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset
from torchtitan.components.dataloader import ParallelAwareDataloader
from torchtitan.components.loss import IGNORE_INDEX

from common.chat import load_tokenizer
from trainer.titan.packing import PackedRows, pack_conversations
from trainer.tokenizer.train import tokenizer_sha256

MANIFEST = "manifest.json"


def read_manifest(data_dir: Path) -> dict[str, Any]:
    """Load `data_dir/manifest.json`, with errors that name the directory or file."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist: run `chakor data prepare` first")
    path = data_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {data_dir} holds no prepared data")
    manifest = json.loads(path.read_text())
    for key in ("dtype", "splits", "tokenizer_sha256"):
        if key not in manifest:
            raise ValueError(f"{path}: missing key {key!r}")
    return manifest


def check_tokenizer(data_dir: Path, tokenizer_dir: Path) -> dict[str, Any]:
    """The manifest of `data_dir`, once its shards are known to be tokenized with `tokenizer_dir`'s."""
    manifest = read_manifest(data_dir)
    if manifest["tokenizer_sha256"] != tokenizer_sha256(tokenizer_dir):
        raise ValueError(
            f"{Path(data_dir) / MANIFEST}: tokenizer_sha256 does not match "
            f"{Path(tokenizer_dir) / 'tokenizer.json'} (the data was tokenized with another tokenizer)"
        )
    return manifest


def check_data_dir(data_dir: Path, tokenizer_dir: Path, seq_len: int) -> dict[str, Any]:
    """Check shards against the tokenizer and the sequence length before a run starts."""
    manifest = check_tokenizer(data_dir, tokenizer_dir)
    path = Path(data_dir) / MANIFEST
    for split in ("train", "val"):
        info = manifest["splits"].get(split)
        tokens = info.get("tokens", 0) if info else 0
        if tokens <= seq_len:
            raise ValueError(f"{path}: split {split!r} has {tokens} tokens, need more than seq_len {seq_len}")
    return manifest


class ShardTokens:
    """The shards of one split as one token sequence, read window by window through `np.memmap`.

    Nothing is loaded up front: `read` maps just the bytes of the requested range and copies them out,
    and the mapping is dropped with the view, so resident memory stays at one window however large the
    shards are (a long-lived map would keep every page it ever touched resident).
    """

    def __init__(self, data_dir: Path, split: str) -> None:
        manifest = read_manifest(data_dir)
        where = Path(data_dir) / MANIFEST
        self.dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
        self.paths: list[Path] = []
        sizes = []
        for name in manifest["splits"].get(split, {}).get("shards", []):
            path = Path(data_dir) / name
            if not path.is_file():
                raise FileNotFoundError(f"{where}: shard {path} is missing")
            size = path.stat().st_size
            if size % self.dtype.itemsize:
                raise ValueError(f"{path}: {size} bytes is not a whole number of {self.dtype} tokens")
            if size:
                self.paths.append(path)
                sizes.append(size // self.dtype.itemsize)
        if not sizes:
            raise ValueError(f"{where}: split {split!r} is empty")
        self.starts = np.concatenate([[0], np.cumsum(sizes)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens `start:stop` of the split (across shard boundaries) as int64."""
        parts = []
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        for index in range(first, len(self.paths)):
            lo, hi = max(start, int(self.starts[index])), min(stop, int(self.starts[index + 1]))
            if lo >= hi:
                break
            offset = (lo - int(self.starts[index])) * self.dtype.itemsize
            view = np.memmap(self.paths[index], self.dtype, mode="r", offset=offset, shape=(hi - lo,))
            parts.append(view.astype(np.int64))
            del view
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


class ArrayTokens:
    """An in-memory token sequence with ShardTokens' interface."""

    def __init__(self, tokens: np.ndarray) -> None:
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.tokens[start:stop].astype(np.int64)


TokenSource = ShardTokens | ArrayTokens
_M64 = (1 << 64) - 1
_ROUNDS = 4


def _mix(x: int) -> int:
    """splitmix64's finalizer: a cheap 64-bit hash with good avalanche."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class WindowOrder:
    """A seeded permutation of `range(n)` computed per index in O(1) memory.

    A 4-round Feistel network on the smallest even number of bits covering n, with cycle-walking
    (re-encrypt until the value falls below n; the domain is under 4n, so on average under 4 rounds
    trips). A materialized `permutation(n)` costs 8 bytes per window on every rank: 400 MB for the
    seed's 103B tokens at seq_len 2048. Any (seed, epoch) gives another bijection.
    """

    def __init__(self, n: int, seed: int, epoch: int) -> None:
        self.n = n
        self.half = max(1, ((max(n - 1, 1)).bit_length() + 1) // 2)
        self.mask = (1 << self.half) - 1
        base = _mix(_mix(seed & _M64) ^ epoch)
        self.keys = [_mix(base + r) for r in range(_ROUNDS)]

    def _encrypt(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix(key ^ right) & self.mask)
        return (left << self.half) | right

    def __getitem__(self, index: int) -> int:
        x = self._encrypt(index)
        while x >= self.n:
            x = self._encrypt(x)
        return x


Sample = tuple[dict[str, torch.Tensor], torch.Tensor]


class DealtRows(IterableDataset):
    """Rows 0..n-1 of the data in a seeded shuffle per epoch (in order without `shuffle`), row i of an
    epoch dealt to rank i % dp_world_size, so each rank reads only its own rows.

    The position in the data, (epoch, position), is the state a checkpoint saves and `load_state_dict`
    restores; with the order a pure function of (seed, epoch), a resumed run continues exactly.
    Subclasses say what a row is (`_sample`).
    """

    def __init__(
        self,
        n_rows: int,
        what: str,
        dp_rank: int,
        dp_world_size: int,
        seed: int = 0,
        shuffle: bool = True,
        infinite: bool = True,
    ) -> None:
        self.n_rows = n_rows
        self.dp_rank, self.dp_world_size = dp_rank, dp_world_size
        self.seed, self.shuffle, self.infinite = seed, shuffle, infinite
        self.per_rank = n_rows // dp_world_size
        if self.per_rank == 0:
            raise ValueError(f"{what}, fewer than the {dp_world_size} data-parallel ranks")
        self.epoch, self.position = 0, 0

    def _window(self, order: WindowOrder | None, k: int) -> int:
        """The row this rank reads k-th in the epoch (a benchmark overrides it with another order)."""
        index = k * self.dp_world_size + self.dp_rank
        return index if order is None else order[index]

    def _sample(self, row: int) -> Sample:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Sample]:
        while True:
            order = WindowOrder(self.n_rows, self.seed, self.epoch) if self.shuffle else None
            while self.position < self.per_rank:
                row = self._window(order, self.position)
                self.position += 1
                yield self._sample(row)
            if not self.infinite:
                return
            self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


class TokenWindows(DealtRows):
    """Windows of `seq_len + 1` tokens at stride seq_len (the rows of DealtRows)."""

    def __init__(
        self,
        tokens: TokenSource | np.ndarray,
        seq_len: int,
        dp_rank: int,
        dp_world_size: int,
        seed: int = 0,
        shuffle: bool = True,
        infinite: bool = True,
    ) -> None:
        self.tokens = ArrayTokens(tokens) if isinstance(tokens, np.ndarray) else tokens
        self.seq_len = seq_len
        self.n_windows = (len(self.tokens) - 1) // seq_len
        what = f"{len(self.tokens)} tokens make {self.n_windows} windows of {seq_len + 1}"
        super().__init__(self.n_windows, what, dp_rank, dp_world_size, seed, shuffle, infinite)

    def _sample(self, row: int) -> Sample:
        start = row * self.seq_len
        window = torch.from_numpy(self.tokens.read(start, start + self.seq_len + 1))
        return {"input": window[:-1]}, window[1:].clone()


class PackedDataset(DealtRows):
    """Packed SFT rows (trainer.titan.packing), dealt to the ranks as DealtRows does.

    Yields `({"input", "positions", "predict"}, labels)`: labels are the next tokens where they are
    assistant tokens, else IGNORE_INDEX; positions restart at each conversation (RoPE + document mask);
    predict marks the labelled tokens, the only ones the model computes logits for (trainer.titan.loss).
    """

    def __init__(
        self,
        rows: PackedRows,
        dp_rank: int,
        dp_world_size: int,
        seed: int = 0,
        shuffle: bool = True,
        infinite: bool = True,
    ) -> None:
        self.rows = rows
        what = f"{len(rows.ids)} packed rows"
        super().__init__(len(rows.ids), what, dp_rank, dp_world_size, seed, shuffle, infinite)

    def _sample(self, row: int) -> Sample:
        ids = torch.from_numpy(self.rows.ids[row])
        labels = ids[1:].clone()
        labels[~torch.from_numpy(self.rows.learn[row, 1:])] = IGNORE_INDEX
        positions = torch.from_numpy(self.rows.positions[row, :-1])
        return {"input": ids[:-1], "positions": positions, "predict": labels != IGNORE_INDEX}, labels


class SplitDataLoader(ParallelAwareDataloader):
    """A torchtitan dataloader over one split of Chakor data: `windows` builds this rank's dataset.

    torchtitan's `pin_memory` is honoured; `num_workers` > 0 is refused (see __init__), since the
    windows are split by data-parallel rank, not by worker.
    """

    @dataclass(kw_only=True, slots=True)
    class Config(ParallelAwareDataloader.Config):
        split: str = "train"
        infinite: bool = True
        seed: int = 0

    def __init__(
        self,
        config: Config,
        *,
        dp_world_size: int,
        dp_rank: int,
        seq_len: int,
        local_batch_size: int,
        **kwargs: Any,
    ) -> None:
        if config.num_workers:
            raise ValueError(
                f"dataloader num_workers={config.num_workers}: Chakor's loaders read memory-mapped windows in the "
                "main process (each worker would replay this rank's whole stream); use num_workers=0"
            )
        dataset = self.windows(config, seq_len, dp_rank, dp_world_size)
        super().__init__(
            dataset, dp_rank=dp_rank, dp_world_size=dp_world_size, batch_size=local_batch_size,
            pin_memory=config.pin_memory,
        )  # fmt: skip

    @staticmethod
    def windows(config: Any, seq_len: int, dp_rank: int, dp_world_size: int) -> IterableDataset:
        """This rank's rows of the split."""
        raise NotImplementedError


class ShardDataLoader(SplitDataLoader):
    """Pretraining shards (`dataset_path` = data directory) for torchtitan."""

    @dataclass(kw_only=True, slots=True)
    class Config(SplitDataLoader.Config):  # its own Config: torchtitan builds the loader class it belongs to
        pass

    @staticmethod
    def windows(config: Config, seq_len: int, dp_rank: int, dp_world_size: int) -> IterableDataset:
        """This rank's token windows of the split (a benchmark overrides it with another data path)."""
        tokens = ShardTokens(Path(config.dataset_path or ""), config.split)
        return TokenWindows(
            tokens, seq_len, dp_rank, dp_world_size,
            seed=config.seed, shuffle=config.split == "train", infinite=config.infinite,
        )  # fmt: skip


class ChatDataLoader(SplitDataLoader):
    """Packed multi-turn conversations (`dataset_path` = JSONL file), loss on assistant tokens only."""

    @dataclass(kw_only=True, slots=True)
    class Config(SplitDataLoader.Config):
        tokenizer_dir: str = ""

    @staticmethod
    def windows(config: Config, seq_len: int, dp_rank: int, dp_world_size: int) -> IterableDataset:
        """This rank's packed rows of the split's conversations."""
        rows = pack_conversations(
            Path(config.dataset_path or ""), load_tokenizer(Path(config.tokenizer_dir)), seq_len,
            config.split,
        )  # fmt: skip
        return PackedDataset(
            rows, dp_rank, dp_world_size,
            seed=config.seed, shuffle=config.split == "train", infinite=config.infinite,
        )  # fmt: skip
