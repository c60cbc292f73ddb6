"""Build a tiny random-init model through the real pipeline: tokenizer -> export -> our GGUF converter."""

from __future__ import annotations

import pydoc_data.topics
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TinyModel:
    """Paths of a tiny model: its tokenizer, its export directory and an f32 GGUF of it."""

    tokenizer_dir: Path
    export_dir: Path
    gguf_path: Path


def tiny_corpus() -> list[str]:
    """A few hundred KB of English prose that ships with Python (pydoc topics)."""
    return list(pydoc_data.topics.topics.values())


def build_tiny_model(root: Path, vocab_size: int = 512) -> TinyModel:
    """Train a tokenizer, random-init a 2-layer model, export it and convert it to an f32 GGUF."""
    import torch

    from converter.convert import convert
    from trainer.configs import ModelConfig
    from trainer.export import export_state_dict
    from trainer.model import Transformer
    from trainer.tokenizer import load_tokenizer, train_tokenizer

    tokenizer_dir = train_tokenizer(tiny_corpus(), vocab_size, root / "tokenizer")
    cfg = ModelConfig(
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=load_tokenizer(tokenizer_dir).get_vocab_size(),
        ffn_hidden_dim=192,
        max_seq_len=1024,
        rope_theta=10000.0,
        norm_eps=1e-5,
        tie_embeddings=False,
    )
    torch.manual_seed(0)
    model = Transformer(cfg)
    export_dir = export_state_dict(
        model.state_dict(), cfg, tokenizer_dir, root / "export", lineage={"source": "tests: random init"}
    )
    gguf_path = convert(export_dir, root / "tiny-f32.gguf", "f32")
    return TinyModel(tokenizer_dir=tokenizer_dir, export_dir=export_dir, gguf_path=gguf_path)
