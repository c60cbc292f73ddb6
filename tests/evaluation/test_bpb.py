"""Bits per byte: loss / ln 2 x tokens / bytes, checked by hand on a uniform model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from common.chat import load_tokenizer
from evaluation.bpb import bits_per_byte, token_byte_lengths, validation_loss, windows
from evaluation.errors import EvalError

TEXT = "Café, naïve 東京 🙂 def add(a, b):\n\treturn a + b"


class Uniform(torch.nn.Module):
    """A language model that gives every token of a vocabulary of `size` the same probability."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*ids.shape, self.size)


def test_formula_on_round_numbers() -> None:
    # 2 bits per token (loss 2 ln 2 nats), 3 tokens standing for 6 bytes: 1 bit per byte
    assert bits_per_byte(2 * math.log(2), 3, 6) == pytest.approx(1.0)
    with pytest.raises(EvalError, match="needs tokens and bytes"):
        bits_per_byte(1.0, 10, 0)


def test_token_bytes_add_up_to_the_utf8_text(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    lengths = token_byte_lengths(tokenizer)
    ids = tokenizer.encode(TEXT, add_special_tokens=False).ids
    assert int(lengths[ids].sum()) == len(TEXT.encode("utf-8")) == 54
    assert lengths[tokenizer.token_to_id("<|bos|>")] == 0 and lengths[tokenizer.token_to_id("<|end|>")] == 0


def test_uniform_model_scores_log2_vocab_bits_per_token(tokenizer_dir: Path) -> None:
    """Loss is ln V per token exactly; bpb = log2 V x tokens / 54 bytes of the targets (BOS first, 0 bytes)."""
    tokenizer = load_tokenizer(tokenizer_dir)
    vocab = tokenizer.get_vocab_size()
    ids = np.array([tokenizer.token_to_id("<|bos|>"), *tokenizer.encode(TEXT, add_special_tokens=False).ids])
    result = validation_loss(Uniform(vocab), ids, token_byte_lengths(tokenizer), window=8)
    assert result.tokens == len(ids) - 1  # every id but the first is predicted once
    assert result.bytes == 54  # all of TEXT; the BOS is never a target
    assert result.loss == pytest.approx(math.log(vocab))
    assert result.bits_per_byte == pytest.approx(math.log2(vocab) * (len(ids) - 1) / 54)


def test_windows_overlap_by_one() -> None:
    parts = [w.tolist() for w in windows(np.arange(10), 4)]
    assert parts == [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8], [8, 9]]
