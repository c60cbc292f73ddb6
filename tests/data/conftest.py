"""Shared fixtures for the data pipeline and tokenizer tests: a tiny tokenizer trained once."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from trainer.tokenizer import load_tokenizer, train_tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "def add(a, b):\n    return a + b\n",
    "What does json.dumps do? Serialize obj to a JSON formatted str.",
    "Return the sum of the numbers in the list, or zero when it is empty.",
] * 20


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tokenizer(CORPUS, vocab_size=400, out_dir=tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> Tokenizer:
    return load_tokenizer(tokenizer_dir)
