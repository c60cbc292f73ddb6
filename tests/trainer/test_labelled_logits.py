"""SFT's labelled-token head (`predict`): the same loss and gradients as logits for every token."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.configs import ModelConfig
from trainer.model import Transformer
from trainer.titan.loss import IGNORE_INDEX, LabelledCrossEntropyLoss, labelled_cross_entropy


def packed_batch(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two rows of two documents each; labels on a few tokens at the end of each document."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (2, 16), generator=generator)
    positions = torch.tensor([[*range(9), *range(7)], [*range(5), *range(11)]])
    labels = torch.full((2, 16), IGNORE_INDEX)
    for row, ends in ((0, (9, 16)), (1, (5, 16))):
        for end in ends:
            labels[row, end - 3 : end] = tokens[row, end - 3 : end]
    return tokens, positions, labels


def loss_and_grads(model: Transformer, batch: tuple, predict: bool) -> tuple[float, list[torch.Tensor]]:
    tokens, positions, labels = batch
    model.zero_grad()
    pred = model(tokens, positions, labels != IGNORE_INDEX if predict else None)
    loss = labelled_cross_entropy(pred, labels) / (labels != IGNORE_INDEX).sum()
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def test_predict_returns_the_labelled_tokens_logits_in_row_major_order(micro_cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    model = Transformer(micro_cfg)
    tokens, positions, labels = packed_batch(micro_cfg)
    mask = labels != IGNORE_INDEX
    with torch.no_grad():
        full = model(tokens, positions)
        picked = model(tokens, positions, mask)
    assert picked.shape == (12, micro_cfg.vocab_size) and picked.dtype == torch.float32
    torch.testing.assert_close(picked, full[mask], rtol=1e-5, atol=1e-5)


def test_loss_and_gradients_match_the_full_logits(micro_cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    model = Transformer(micro_cfg)
    batch = packed_batch(micro_cfg)
    full_loss, full_grads = loss_and_grads(model, batch, predict=False)
    loss, grads = loss_and_grads(model, batch, predict=True)
    assert abs(loss - full_loss) < 1e-6
    for grad, full in zip(grads, full_grads, strict=True):
        torch.testing.assert_close(grad, full, rtol=1e-5, atol=1e-6)
    # The full-logits path is torchtitan's own summed cross-entropy with IGNORE_INDEX.
    tokens, positions, labels = batch
    with torch.no_grad():
        logits = model(tokens, positions)
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
    torch.testing.assert_close(labelled_cross_entropy(logits, labels), expected)


def test_the_loss_divides_the_sum_by_the_global_token_count(micro_cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    tokens, positions, labels = packed_batch(micro_cfg)
    with torch.no_grad():
        pred = Transformer(micro_cfg)(tokens, positions, labels != IGNORE_INDEX)
    loss_fn = LabelledCrossEntropyLoss(
        LabelledCrossEntropyLoss.Config(global_vocab_size=micro_cfg.vocab_size)
    )
    loss, metrics = loss_fn(pred, labels, torch.tensor(24))
    torch.testing.assert_close(loss, labelled_cross_entropy(pred, labels) / 24)
    assert metrics == {}
