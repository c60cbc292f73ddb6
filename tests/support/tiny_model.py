"""Build small random-init models through the real pipeline: tokenizer -> export -> our GGUF converter."""

from __future__ import annotations

import pydoc_data.topics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.configs import ModelConfig


@dataclass(frozen=True)
class TinyModel:
    """Paths of a tiny model: its tokenizer, its export directory and an f32 GGUF of it."""

    tokenizer_dir: Path
    export_dir: Path
    gguf_path: Path


def tiny_corpus() -> list[str]:
    """A few hundred KB of English prose that ships with Python (pydoc topics)."""
    return list(pydoc_data.topics.topics.values())


def random_model(cfg: ModelConfig, tokenizer_dir: Path, root: Path) -> tuple[Path, Path]:
    """Random-init (seed 0) a model of `cfg`, export it and convert it to f32; returns (export dir, GGUF)."""
    import torch

    from converter.convert import convert
    from trainer.export import export_state_dict
    from trainer.model import Transformer

    torch.manual_seed(0)
    state = Transformer(cfg).state_dict()
    export_dir = export_state_dict(
        state, cfg, tokenizer_dir, root / "export", lineage={"source": "tests: random init"}
    )
    return export_dir, convert(export_dir, root / "model-f32.gguf", "f32")


def model_config(tokenizer_dir: Path, dim: int, n_layers: int, n_heads: int, n_kv_heads: int) -> ModelConfig:
    """A Llama-style config sized for tests, with the tokenizer's vocabulary."""
    from common.chat import load_tokenizer
    from trainer.configs import ModelConfig

    return ModelConfig(
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        vocab_size=load_tokenizer(tokenizer_dir).get_vocab_size(),
        ffn_hidden_dim=3 * dim,
        max_seq_len=2048,
        rope_theta=10000.0,
        norm_eps=1e-5,
        tie_embeddings=False,
    )


def build_tiny_model(root: Path, vocab_size: int = 512) -> TinyModel:
    """Train a tokenizer and make a 2-layer random-init model (answers in milliseconds on a CPU)."""
    from trainer.tokenizer import train_tokenizer

    tokenizer_dir = train_tokenizer(tiny_corpus(), vocab_size, root / "tokenizer")
    cfg = model_config(tokenizer_dir, dim=64, n_layers=2, n_heads=4, n_kv_heads=2)
    export_dir, gguf_path = random_model(cfg, tokenizer_dir, root)
    return TinyModel(tokenizer_dir=tokenizer_dir, export_dir=export_dir, gguf_path=gguf_path)
