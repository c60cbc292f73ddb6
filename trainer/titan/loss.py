"""Cross-entropy over the labelled tokens' logits only, for models called with `predict` (SFT).

`Transformer.forward(..., predict=labels != IGNORE_INDEX)` returns logits [N, vocab] of the N labelled
tokens in row-major order, so `labels[labels != IGNORE_INDEX]` are their targets in the same order. The
loss is torchtitan's summed cross-entropy (the trainer divides by the global count of labelled tokens);
it is the same sum over the same tokens as on the full [B, T, vocab] logits, with the head's matmul
and the log-softmax done for N tokens instead of B x T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchtitan.components.loss import IGNORE_INDEX, CrossEntropyLoss, cross_entropy_loss
from torchtitan.config import CompileConfig


def labelled_cross_entropy(
    pred: torch.Tensor, labels: torch.Tensor, *, global_vocab_size: int | None = None
) -> torch.Tensor:
    """Summed cross-entropy; `pred` is [N, vocab] for the labelled tokens or [B, T, vocab] for all."""
    if pred.dim() == 2:
        return F.cross_entropy(pred.float(), labels[labels != IGNORE_INDEX], reduction="sum")
    return cross_entropy_loss(pred, labels, global_vocab_size=global_vocab_size)


class LabelledCrossEntropyLoss(CrossEntropyLoss):
    """torchtitan's CrossEntropyLoss that also takes the labelled tokens' logits alone."""

    @dataclass(kw_only=True, slots=True)
    class Config(CrossEntropyLoss.Config):  # its own Config: torchtitan builds the class it belongs to
        pass

    def __init__(self, config: Config, *, compile_config: CompileConfig | None = None) -> None:
        self.fn = labelled_cross_entropy
        self._maybe_compile(compile_config)
        self.global_vocab_size = config.global_vocab_size
