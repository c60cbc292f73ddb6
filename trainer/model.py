"""A Llama-style decoder-only transformer, written out by hand.

    tokens -> tok_embeddings -> n_layers x Block -> norm -> output -> logits

    Block:  h = x + attention(attention_norm(x))      causal self-attention, RoPE, GQA
            y = h + feed_forward(ffn_norm(h))         SwiGLU

Packed rows (SFT) pass `positions`, 0 at every document start; attention then stays inside each
document: through FlexAttention with a block mask on CUDA (masked blocks are skipped and SDPA's flash
kernel is not given up for a dense mask), through SDPA with a dense T x T mask elsewhere (FlexAttention
has no CPU backward). `document_attention_backend` names the choice; the trainer logs it.

Rotary embeddings rotate INTERLEAVED pairs (x0, x1), (x2, x3), ... (the Meta / llama.cpp convention), so
the weights go to GGUF unchanged. Parameter names are the export format (docs/interfaces.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from trainer.configs import ModelConfig


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight, computed in float32 like llama.cpp."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).type_as(x)


def rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position * theta^(-2i/head_dim), each [max_seq_len, head_dim // 2]."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x [B, T, H, head_dim] by the angles in cos/sin [T or B x T, head_dim // 2]."""
    x32 = x.float().unflatten(-1, (-1, 2))
    x0, x1 = x32[..., 0], x32[..., 1]
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    rotated = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


def document_mask(positions: torch.Tensor) -> torch.Tensor:
    """Causal attention within documents: [B, 1, T, T] bool, True where query i may see key j.

    A document starts wherever the position is 0, so j is visible to i when both lie in the same
    document and j <= i. Dense (T x T per row), for SDPA where FlexAttention cannot run; T is the
    trained context, 256 to 4096 here.
    """
    document = torch.cumsum((positions == 0).int(), dim=1)
    same = document[:, :, None] == document[:, None, :]
    causal = torch.ones(
        positions.size(1), positions.size(1), dtype=torch.bool, device=positions.device
    ).tril()
    return (same & causal)[:, None]


DocumentAttention = Literal["auto", "flex", "dense"]
FLEX, DENSE = "flex_attention with a document block mask", "sdpa with a dense document mask"


@functools.cache
def _compiled_flex_attention() -> Callable[..., torch.Tensor]:
    """FlexAttention is a fused kernel only compiled (eager, it is a reference that materializes the
    scores). Wrapped on first use: torch.compile loads the compiler stack, seconds at import."""
    return cast(Callable[..., torch.Tensor], torch.compile(flex_attention))


def document_attention_backend(device: torch.device, choice: DocumentAttention = "auto") -> str:
    """How packed rows are masked on `device`: FLEX on CUDA, DENSE elsewhere, unless `choice` forces one."""
    if choice == "auto":
        choice = "flex" if device.type == "cuda" else "dense"
    return FLEX if choice == "flex" else DENSE


def document_block_mask(positions: torch.Tensor) -> BlockMask:
    """`document_mask` as a FlexAttention BlockMask (built once per batch and shared by all layers)."""
    document = torch.cumsum((positions == 0).int(), dim=1)

    def same_document_causal(
        b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor
    ) -> torch.Tensor:
        return (document[b, q] == document[b, kv]) & (kv <= q)

    batch, length = positions.shape
    return create_block_mask(same_document_causal, batch, None, length, length, device=positions.device)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | BlockMask | None
) -> torch.Tensor:
    """Attention of q/k/v [B, H, T, head_dim]: causal without `mask`, else within its documents."""
    gqa = k.size(1) != q.size(1)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if isinstance(mask, BlockMask):
        flex: Callable[..., torch.Tensor] = (
            _compiled_flex_attention() if q.is_cuda else cast(Callable[..., torch.Tensor], flex_attention)
        )
        return flex(q, k, v, block_mask=mask, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


class Attention(nn.Module):
    """Causal multi-head self-attention; n_kv_heads < n_heads shares K/V between query groups."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.head_dim = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | BlockMask | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        # -1 instead of n_heads: under tensor parallelism each rank holds a slice of the heads.
        q = self.wq(x).view(B, T, -1, self.head_dim)
        k = self.wk(x).view(B, T, -1, self.head_dim)
        v = self.wv(x).view(B, T, -1, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, head_dim]
        out = attend(q, k, v, mask)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x); w1 is the gate, w3 the up and w2 the down projection."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Pre-norm residual block: attention then feed-forward."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg.dim, cfg.ffn_hidden_dim)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | BlockMask | None = None,
    ) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """The decoder: `forward(tokens [B, T]) -> logits [B, T, vocab] (float32)`.

    `document_attention` picks the masking of packed rows ("auto": `document_attention_backend`).
    """

    document_attention: DocumentAttention = "auto"

    # Non-persistent buffers registered in __init__ (declared for the type checker).
    rope_cos: torch.Tensor
    rope_sin: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        # A ModuleDict keyed "0", "1", ... gives the names layers.{i}.* and lets a layer be wrapped in place.
        self.layers = nn.ModuleDict({str(i): Block(cfg) for i in range(cfg.n_layers)})
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-NeoX init: N(0, sqrt(2 / 5d)) everywhere, 2 / (n_layers sqrt(d)) for wo and w2; norms at 1."""
        cfg = self.cfg
        small = math.sqrt(2 / (5 * cfg.dim))
        scaled = 2 / (cfg.n_layers * math.sqrt(cfg.dim))
        nn.init.normal_(self.tok_embeddings.weight, std=small)
        for layer in self.layers.values():
            # A Block, or a wrapper (activation checkpointing, compile) that forwards attributes.
            block = cast(Block, layer)
            for linear in (block.attention.wq, block.attention.wk, block.attention.wv):
                nn.init.normal_(linear.weight, std=small)
            nn.init.normal_(block.feed_forward.w1.weight, std=small)
            nn.init.normal_(block.feed_forward.w3.weight, std=small)
            nn.init.normal_(block.attention.wo.weight, std=scaled)
            nn.init.normal_(block.feed_forward.w2.weight, std=scaled)
            nn.init.ones_(block.attention_norm.weight)
            nn.init.ones_(block.ffn_norm.weight)
        nn.init.ones_(self.norm.weight)
        if self.output is not None:
            nn.init.normal_(self.output.weight, std=small)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.rope_cos = cos.to(self.rope_cos.device)
        self.rope_sin = sin.to(self.rope_sin.device)

    def forward(
        self, tokens: torch.Tensor, positions: torch.Tensor | None = None, predict: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`positions` [B, T] (packed SFT rows): each token's position in its own document, 0 at
        every document start. RoPE then uses them and attention stays inside each document.

        `predict` [B, T] bool: return logits [N, vocab] of only the N True tokens, in row-major order
        (the tokens that have a label). The head is over a third of a tiny model's FLOPs and under a
        sixth of grounded SFT tokens have a label, so SFT skips most of it (trainer.titan.loss).
        """
        T = tokens.size(1)
        if self.cfg.max_seq_len < T:
            raise ValueError(f"sequence length {T} exceeds max_seq_len {self.cfg.max_seq_len}")
        if positions is None:
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        else:
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        x = self.tok_embeddings(tokens)
        mask: torch.Tensor | BlockMask | None = None
        if positions is not None:
            if document_attention_backend(positions.device, self.document_attention) == FLEX:
                mask = document_block_mask(positions)
            else:
                # Additive (0 / -inf) in the activations' dtype, built once: SDPA would convert a bool
                # mask per layer.
                allowed = document_mask(positions)
                mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(
                    ~allowed, float("-inf")
                )
        for block in self.layers.values():
            x = block(x, cos, sin, mask)
        if predict is not None:
            x = x[predict]
        x = self.norm(x)
        logits = F.linear(x, self.tok_embeddings.weight) if self.output is None else self.output(x)
        return logits.float()
