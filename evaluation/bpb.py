"""Validation loss and bits per byte of the exported model, in PyTorch, over the `val` shards.

Bits per byte is comparable across tokenizers: bpb = (loss / ln 2) x tokens / bytes, where loss is the
mean cross-entropy in nats per scored token and bytes is the UTF-8 length of the scored tokens'
text. With a byte-level BPE every token stands for a fixed byte string, so the byte count is exact
(special tokens such as <|bos|> stand for no text: 0 bytes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from tokenizers.pre_tokenizers import ByteLevel

from converter.errors import ConversionError
from converter.export_dir import read_json
from evaluation.errors import EvalError

BATCH_WINDOWS = 8  # windows per forward pass: enough to keep the CPU busy, little memory


@dataclass(frozen=True)
class Validation:
    """Loss over `tokens` scored tokens of the val split and the text they stand for."""

    loss: float  # nats per token
    tokens: int
    bytes: int
    window: int

    @property
    def bits_per_byte(self) -> float:
        return bits_per_byte(self.loss, self.tokens, self.bytes)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)


def bits_per_byte(loss_nats: float, tokens: int, n_bytes: int) -> float:
    """(loss / ln 2) x tokens / bytes: nats per token to bits per UTF-8 byte."""
    if tokens <= 0 or n_bytes <= 0:
        raise EvalError(f"bits per byte needs tokens and bytes (got {tokens} tokens, {n_bytes} bytes)")
    return loss_nats / math.log(2) * tokens / n_bytes


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (0 for special tokens); needs a byte-level BPE.

    Byte-level BPE writes every byte as one character of a 256-character alphabet, so a token's
    byte count is its length in characters.
    """
    alphabet = set(ByteLevel.alphabet())
    special = {token.content for token in tokenizer.get_added_tokens_decoder().values() if token.special}
    lengths = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    for token, index in tokenizer.get_vocab().items():
        if token in special:
            continue
        if not set(token) <= alphabet:
            raise EvalError(f"token {token!r} is not byte-level BPE: cannot count its bytes")
        lengths[index] = len(token)
    return lengths


def split_ids(data_dir: Path, split: str, tokenizer_sha256: str, max_tokens: int) -> np.ndarray:
    """The first `max_tokens` ids of a split's shards (the manifest's tokenizer must be the export's)."""
    manifest_path = Path(data_dir) / "manifest.json"
    try:
        manifest = read_json(manifest_path)
    except ConversionError as exc:
        raise EvalError(str(exc)) from None
    if manifest.get("tokenizer_sha256") != tokenizer_sha256:
        raise EvalError(f"{manifest_path}: data was tokenized with another tokenizer than the export's")
    try:
        shards, dtype = manifest["splits"][split]["shards"], np.dtype(manifest["dtype"]).newbyteorder("<")
    except (KeyError, TypeError) as exc:
        raise EvalError(f"{manifest_path}: no {split} split ({exc})") from None
    parts, count = [np.zeros(0, dtype=np.int64)], 0
    for name in shards:
        if count >= max_tokens:
            break
        path = Path(data_dir) / name
        if not path.is_file():
            raise EvalError(f"{path}: {split} shard not found")
        part = np.fromfile(path, dtype=dtype, count=max_tokens - count).astype(np.int64)
        parts.append(part)
        count += len(part)
    return np.concatenate(parts)


def val_ids(data_dir: Path, tokenizer_sha256: str, max_tokens: int) -> np.ndarray:
    """The first `max_tokens` ids of the val split; EvalError when it has fewer than two."""
    ids = split_ids(data_dir, "val", tokenizer_sha256, max_tokens)
    if len(ids) < 2:
        raise EvalError(f"{data_dir}: the val split has {len(ids)} tokens, too few to score")
    return ids


def documents_text(ids: np.ndarray, tokenizer: Tokenizer) -> str:
    """Shard ids back to text: documents split at <|bos|>, decoded, joined by newlines."""
    bos = tokenizer.token_to_id("<|bos|>")
    starts = [0, *(np.flatnonzero(ids == bos).tolist()), len(ids)]
    docs = (ids[a:b][ids[a:b] != bos].tolist() for a, b in itertools.pairwise(starts))
    return "\n".join(
        text for doc in docs if doc and (text := tokenizer.decode(doc, skip_special_tokens=False))
    )


def windows(ids: np.ndarray, window: int) -> Iterator[np.ndarray]:
    """Consecutive slices of window + 1 ids overlapping by one, so every id after the first is a target once."""
    for start in range(0, len(ids) - 1, window):
        yield ids[start : start + window + 1]


def validation_loss(model: object, ids: np.ndarray, byte_lengths: np.ndarray, window: int) -> Validation:
    """Mean next-token cross-entropy of `model` (the trainer's Transformer) over `ids`, in windows."""
    total, tokens, n_bytes = 0.0, 0, 0
    pending: list[np.ndarray] = []

    def flush() -> None:
        nonlocal total, tokens, n_bytes
        by_length: dict[int, list[np.ndarray]] = {}
        for chunk in pending:
            by_length.setdefault(len(chunk), []).append(chunk)
        for group in by_length.values():
            batch = torch.from_numpy(np.stack(group))
            with torch.no_grad():
                logits = model(batch[:, :-1]).double()  # type: ignore[operator]
            nll = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum"
            )
            total += float(nll)
            tokens += batch[:, 1:].numel()
            n_bytes += int(byte_lengths[batch[:, 1:].numpy()].sum())
        pending.clear()

    for chunk in windows(ids, window):
        pending.append(chunk)
        if len(pending) == BATCH_WINDOWS:
            flush()
    flush()
    return Validation(loss=total / tokens, tokens=tokens, bytes=n_bytes, window=window)
