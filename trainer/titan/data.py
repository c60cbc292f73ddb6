"""torchtitan dataloaders over Chakor data: pretraining shards and packed multi-turn SFT conversations.

Both yield `({"input": ids[:-1]}, labels)` windows of `seq_len + 1` tokens; a label is -100 (torchtitan's
IGNORE_INDEX) where no loss is taken. Position in the data is checkpointed (exact `--resume`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset
from torchtitan.components.dataloader import ParallelAwareDataloader
from torchtitan.components.loss import IGNORE_INDEX

from trainer.tokenizer.chat import Message, encode_chat, load_tokenizer, validate_messages
from trainer.tokenizer.train import tokenizer_sha256

MANIFEST = "manifest.json"
VAL_EVERY = 20


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


def check_data_dir(data_dir: Path, tokenizer_dir: Path, seq_len: int) -> dict[str, Any]:
    """Check shards against the tokenizer and the sequence length before a run starts."""
    manifest = read_manifest(data_dir)
    path = Path(data_dir) / MANIFEST
    if manifest["tokenizer_sha256"] != tokenizer_sha256(tokenizer_dir):
        raise ValueError(
            f"{path}: tokenizer_sha256 does not match {Path(tokenizer_dir) / 'tokenizer.json'} "
            "(the data was tokenized with another tokenizer)"
        )
    for split in ("train", "val"):
        info = manifest["splits"].get(split)
        tokens = info.get("tokens", 0) if info else 0
        if tokens <= seq_len:
            raise ValueError(f"{path}: split {split!r} has {tokens} tokens, need more than seq_len {seq_len}")
    return manifest


def load_split(data_dir: Path, split: str) -> np.ndarray:
    """All token ids of one split, shards concatenated in manifest order."""
    manifest = read_manifest(data_dir)
    dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
    shards = manifest["splits"].get(split, {}).get("shards", [])
    arrays = []
    for name in shards:
        path = Path(data_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"{Path(data_dir) / MANIFEST}: shard {path} is missing")
        arrays.append(np.fromfile(path, dtype=dtype))
    if not arrays or sum(a.size for a in arrays) == 0:
        raise ValueError(f"{Path(data_dir) / MANIFEST}: split {split!r} is empty")
    return np.concatenate(arrays)


def read_conversations(path: Path) -> list[list[Message]]:
    """The conversations of a JSONL file: `{"messages": [...]}` or a bare list of messages per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT data {path} does not exist")
    conversations = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            messages = record["messages"] if isinstance(record, dict) else record
            validate_messages(messages)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: bad conversation: {exc}") from None
        conversations.append(messages)
    if not conversations:
        raise ValueError(f"{path}: no conversations")
    return conversations


def split_conversations(conversations: list[list[Message]], split: str) -> list[list[Message]]:
    """Every VAL_EVERY-th conversation is held out as "val" (only when there are at least VAL_EVERY)."""
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}")
    if len(conversations) < VAL_EVERY:
        return conversations if split == "train" else []
    held_out = [i % VAL_EVERY == VAL_EVERY - 1 for i in range(len(conversations))]
    return [c for c, out in zip(conversations, held_out, strict=True) if out == (split == "val")]


def pack_conversations(
    path: Path, tokenizer_dir: Path, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Encode a split's conversations back to back: (ids, learn) where learn marks assistant tokens."""
    tokenizer = load_tokenizer(tokenizer_dir)
    conversations = split_conversations(read_conversations(path), split)
    if not conversations:
        raise ValueError(f"{path}: no {split} conversations")
    encodings = [encode_chat(tokenizer, messages) for messages in conversations]
    ids = [i for e in encodings for i in e.ids]
    learn = [m for e in encodings for m in e.assistant_mask]
    return np.asarray(ids, dtype=np.int64), np.asarray(learn, dtype=bool)


class TokenWindows(IterableDataset):
    """Windows of `seq_len + 1` tokens, a seeded shuffle per epoch, window i going to rank i % dp_world_size."""

    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        dp_rank: int,
        dp_world_size: int,
        learn: np.ndarray | None = None,
        seed: int = 0,
        shuffle: bool = True,
        infinite: bool = True,
    ) -> None:
        self.tokens, self.learn, self.seq_len = tokens, learn, seq_len
        self.dp_rank, self.dp_world_size = dp_rank, dp_world_size
        self.seed, self.shuffle, self.infinite = seed, shuffle, infinite
        self.n_windows = (len(tokens) - 1) // seq_len
        self.per_rank = self.n_windows // dp_world_size
        if self.per_rank == 0:
            raise ValueError(
                f"{len(tokens)} tokens make {self.n_windows} windows of {seq_len + 1}, "
                f"fewer than the {dp_world_size} data-parallel ranks"
            )
        self.epoch, self.position = 0, 0

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_windows)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n_windows)

    def __iter__(self):
        while True:
            order = self._order()
            while self.position < self.per_rank:
                start = int(order[self.position * self.dp_world_size + self.dp_rank]) * self.seq_len
                self.position += 1
                yield self._sample(start)
            if not self.infinite:
                return
            self.epoch, self.position = self.epoch + 1, 0

    def _sample(self, start: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        window = torch.from_numpy(self.tokens[start : start + self.seq_len + 1].astype(np.int64))
        labels = window[1:].clone()
        if self.learn is not None:
            learn = torch.from_numpy(self.learn[start + 1 : start + self.seq_len + 1])
            labels[~learn] = IGNORE_INDEX
        return {"input": window[:-1]}, labels

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


class ShardDataLoader(ParallelAwareDataloader):
    """Pretraining shards (`dataset_path` = data directory) for torchtitan."""

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
        tokens = load_split(Path(config.dataset_path or ""), config.split)
        dataset = TokenWindows(
            tokens, seq_len, dp_rank, dp_world_size,
            seed=config.seed, shuffle=config.split == "train", infinite=config.infinite,
        )  # fmt: skip
        super().__init__(dataset, dp_rank=dp_rank, dp_world_size=dp_world_size, batch_size=local_batch_size)


class ChatDataLoader(ParallelAwareDataloader):
    """Packed multi-turn conversations (`dataset_path` = JSONL file), loss on assistant tokens only."""

    @dataclass(kw_only=True, slots=True)
    class Config(ParallelAwareDataloader.Config):
        tokenizer_dir: str = ""
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
        ids, learn = pack_conversations(
            Path(config.dataset_path or ""), Path(config.tokenizer_dir), config.split
        )
        dataset = TokenWindows(
            ids, seq_len, dp_rank, dp_world_size, learn=learn,
            seed=config.seed, shuffle=config.split == "train", infinite=config.infinite,
        )  # fmt: skip
        super().__init__(dataset, dp_rank=dp_rank, dp_world_size=dp_world_size, batch_size=local_batch_size)
