"""Fixtures for the trainer tests: a tokenizer, shard directories in the manifest format, tiny configs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.chat import load_tokenizer
from trainer.configs import MODEL_CONFIGS, ModelConfig
from trainer.tokenizer import train_tokenizer
from trainer.tokenizer.train import tokenizer_sha256
from trainer.train import run_training

CORPUS = [
    "The quick brown fox jumps over the lazy dog. ",
    "def add(a, b):\n    return a + b\n",
    "What does json.dumps do? Serialize obj to a JSON formatted str. ",
    "Return the sum of the numbers in the list, or zero when it is empty. ",
] * 20


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tokenizer(CORPUS, vocab_size=320, out_dir=tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def vocab_size(tokenizer_dir: Path) -> int:
    return load_tokenizer(tokenizer_dir).get_vocab_size()


@pytest.fixture(scope="session")
def micro_cfg(vocab_size: int) -> ModelConfig:
    """An even smaller `tiny` so that CPU tests take seconds."""
    return replace(MODEL_CONFIGS["tiny"], dim=64, n_layers=2, ffn_hidden_dim=128, vocab_size=vocab_size)


def write_shards(data_dir: Path, tokenizer_dir: Path, train_docs: int = 400, val_docs: int = 40) -> Path:
    """Tokenize CORPUS (shuffled, repeated) into uint16 shards with a manifest (docs/interfaces.md)."""
    tokenizer = load_tokenizer(tokenizer_dir)
    bos = tokenizer.token_to_id("<|bos|>")
    rng = np.random.default_rng(0)
    data_dir.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n_docs in (("train", train_docs), ("val", val_docs)):
        docs = [CORPUS[i] for i in rng.integers(0, len(CORPUS), n_docs)]
        ids = [t for doc in docs for t in [bos, *tokenizer.encode(doc, add_special_tokens=False).ids]]
        name = f"{split}-00000.bin"
        np.asarray(ids, dtype="<u2").tofile(data_dir / name)
        splits[split] = {"shards": [name], "tokens": len(ids)}
    manifest = {
        "dtype": "uint16",
        "splits": splits,
        "tokenizer_sha256": tokenizer_sha256(tokenizer_dir),
        "sources": ["tests"],
        "stats": {},
        "seed": 0,
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    return data_dir


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    return write_shards(tmp_path_factory.mktemp("data"), tokenizer_dir)


RECIPE: dict[str, Any] = dict(
    steps=6, seq_len=64, local_batch_size=4, lr=1e-2, warmup_steps=2,
    eval_every=3, eval_batches=2, checkpoint_every=3, sample_tokens=8,
)  # fmt: skip


@pytest.fixture(scope="session")
def pretrain_run(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, tokenizer_dir: Path, micro_cfg: ModelConfig
) -> Path:
    """A real 2-process (gloo) torchtitan run of 6 steps, checkpoints at 3 and 6."""
    out = tmp_path_factory.mktemp("runs") / "micro"
    return run_training(out, data_dir, micro_cfg, tokenizer_dir, nproc=2, quiet=True, **RECIPE)
