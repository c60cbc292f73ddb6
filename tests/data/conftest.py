"""Shared fixtures for the data pipeline and tokenizer tests: a tiny tokenizer trained once."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from common.chat import load_tokenizer
from tests.data.corpus import write_corpus, write_parquet_shards
from trainer.data.prepare import PrepareConfig, prepare
from trainer.tokenizer import train_tokenizer

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


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def corpus_sources(corpus: dict[str, Path]) -> list[str]:
    return [str(corpus["docs"]), f"{corpus['jsonl']}:body"]


@pytest.fixture(scope="session")
def parquet_glob(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`DIR/*.parquet:body` over two parquet files of corpus.PARQUET_DOCS."""
    return write_parquet_shards(tmp_path_factory.mktemp("parquet"))


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, corpus_sources: list[str]) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "data"
    prepare(PrepareConfig(sources=corpus_sources, out_dir=out, weights={corpus_sources[1]: 2.0}, seed=7))
    return out
