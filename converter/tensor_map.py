"""The compatibility shim: the trainer's tensor names and shapes -> llama.cpp's GGUF tensor names.

Rotary embeddings in the export already rotate interleaved pairs (llama.cpp's LLAMA_ROPE_TYPE_NORM),
so q/k rows are copied unchanged; only names are mapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf

from trainer.configs import ModelConfig

_T = gguf.MODEL_TENSOR

# per-layer: trainer suffix -> (GGUF tensor kind, shape as a function of the config)
_LAYER = {
    "attention_norm.weight": (_T.ATTN_NORM, lambda s: (s.dim,)),
    "attention.wq.weight": (_T.ATTN_Q, lambda s: (s.n_heads * s.head_dim, s.dim)),
    "attention.wk.weight": (_T.ATTN_K, lambda s: (s.n_kv_heads * s.head_dim, s.dim)),
    "attention.wv.weight": (_T.ATTN_V, lambda s: (s.n_kv_heads * s.head_dim, s.dim)),
    "attention.wo.weight": (_T.ATTN_OUT, lambda s: (s.dim, s.n_heads * s.head_dim)),
    "ffn_norm.weight": (_T.FFN_NORM, lambda s: (s.dim,)),
    "feed_forward.w1.weight": (_T.FFN_GATE, lambda s: (s.ffn_hidden_dim, s.dim)),
    "feed_forward.w2.weight": (_T.FFN_DOWN, lambda s: (s.dim, s.ffn_hidden_dim)),
    "feed_forward.w3.weight": (_T.FFN_UP, lambda s: (s.ffn_hidden_dim, s.dim)),
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: its export name, GGUF name and expected (row-major, PyTorch) shape."""

    source: str
    target: str
    shape: tuple[int, ...]


def _gguf_name(kind: gguf.MODEL_TENSOR, bid: int | None = None) -> str:
    return gguf.TENSOR_NAMES[kind].format(bid=bid) + ".weight"


def tensor_specs(shape: ModelConfig) -> list[TensorSpec]:
    """Every tensor the export must hold, in GGUF write order."""
    specs = [TensorSpec("tok_embeddings.weight", _gguf_name(_T.TOKEN_EMBD), (shape.vocab_size, shape.dim))]
    for i in range(shape.n_layers):
        for suffix, (kind, dims) in _LAYER.items():
            specs.append(TensorSpec(f"layers.{i}.{suffix}", _gguf_name(kind, i), dims(shape)))
    specs.append(TensorSpec("norm.weight", _gguf_name(_T.OUTPUT_NORM), (shape.dim,)))
    if not shape.tie_embeddings:
        specs.append(TensorSpec("output.weight", _gguf_name(_T.OUTPUT), (shape.vocab_size, shape.dim)))
    return specs
