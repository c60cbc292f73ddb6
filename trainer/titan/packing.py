"""SFT conversations -> fixed-length rows: best-fit packing of whole conversations, padded.

Concatenating conversations and cutting fixed windows cuts the same conversations at the same token
every epoch, and their tails are learned without the question in view. Here every conversation lands
whole in one row of `seq_len + 1` tokens (inputs are the first seq_len, labels the last), rows are
filled best-fit decreasing (the longest conversation first, into the row whose free space it fills
most tightly: the classic bin-packing heuristic, within 11/9 of the optimal row count; nanochat's SFT
packer is the streaming variant of the same idea) and the rest of a row is `<|pad|>` with no loss.

`positions` restart at 0 at every conversation (and at the padding), so RoPE sees each conversation
from position 0 and the model's document mask keeps attention inside it (trainer.model).

Input is the SFT data interface of `chakor data sft`: JSONL, one `{"messages": [...]}` (or a bare list
of messages) per line; any producer of that format (grounded data included) packs the same way.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from common.chat import PAD, ChatEncoding, Message, encode_chat, special_id, validate_messages

VAL_EVERY = 20


def read_conversations(path: Path) -> list[list[Message]]:
    """The conversations of a JSONL file: `{"messages": [...]}` or a bare list of messages per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT data {path} does not exist")
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
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


@dataclass
class PackedRows:
    """Rows of `seq_len + 1` tokens. Per token: id, learn (assistant token), position in its
    conversation, and the conversation's index in its split (-1 for padding). `dropped`: conversations
    longer than a row."""

    ids: np.ndarray
    learn: np.ndarray
    positions: np.ndarray
    conversation: np.ndarray
    dropped: int

    @property
    def fill(self) -> float:
        """Fraction of row tokens that belong to a conversation."""
        return float((self.conversation >= 0).mean())


def best_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: indices of the items in each row; every length must be <= capacity.

    Ties keep the input order, so the result depends only on `lengths`.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free space, row index), sorted
    for item in order:
        size = lengths[item]
        slot = bisect.bisect_left(free, (size, -1))
        if slot < len(free):
            space, row = free.pop(slot)
        else:
            space, row = capacity, len(rows)
            rows.append([])
        rows[row].append(item)
        if space - size > 0:
            bisect.insort(free, (space - size, row))
    return rows


def pack_encodings(encodings: list[ChatEncoding], seq_len: int, pad_id: int) -> PackedRows:
    """Pack whole encoded conversations into rows of seq_len + 1 tokens; too-long ones are dropped."""
    row_len = seq_len + 1
    kept = [i for i, e in enumerate(encodings) if len(e.ids) <= row_len]
    rows = best_fit([len(encodings[i].ids) for i in kept], row_len)
    shape = (len(rows), row_len)
    ids = np.full(shape, pad_id, dtype=np.int64)
    learn = np.zeros(shape, dtype=bool)
    conversation = np.full(shape, -1, dtype=np.int64)
    positions = np.zeros(shape, dtype=np.int64)
    for r, members in enumerate(rows):
        at = 0
        for member in members:
            index = kept[member]
            encoding = encodings[index]
            end = at + len(encoding.ids)
            ids[r, at:end] = encoding.ids
            learn[r, at:end] = encoding.assistant_mask
            conversation[r, at:end] = index
            positions[r, at:end] = np.arange(end - at)
            at = end
        positions[r, at:] = np.arange(row_len - at)
    return PackedRows(ids, learn, positions, conversation, dropped=len(encodings) - len(kept))


def pack_conversations(path: Path, tokenizer: Tokenizer, seq_len: int, split: str = "train") -> PackedRows:
    """Read, split, encode and pack a JSONL file's conversations (deterministic: a function of the data;
    the loader shuffles the rows per epoch)."""
    conversations = split_conversations(read_conversations(path), split)
    if not conversations:
        raise ValueError(f"{path}: no {split} conversations")
    encodings = [encode_chat(tokenizer, messages) for messages in conversations]
    packed = pack_encodings(encodings, seq_len, special_id(tokenizer, PAD))
    if len(packed.ids) == 0:
        longest = max(len(e.ids) for e in encodings)
        raise ValueError(
            f"{path}: every {split} conversation is longer than seq_len + 1 = {seq_len + 1} tokens "
            f"(the longest has {longest}); raise --seq-len"
        )
    return packed
