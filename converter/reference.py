"""The PyTorch side of verification: the exported model and tokenizer as the trainer defines them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from common.chat import BOS, load_tokenizer, plain_text_tokenizer, special_id
from trainer.export import load_export

PPL_BATCH = 8  # windows per forward pass: the logits of all windows at once can take gigabytes


class Reference:
    """Exported model (float32, eval) and its tokenizer."""

    def __init__(self, export_dir: Path) -> None:
        self.model, self.config = load_export(Path(export_dir))
        self.tokenizer = load_tokenizer(Path(export_dir))
        self.plain = plain_text_tokenizer(self.tokenizer)
        self.bos_id = special_id(self.tokenizer, BOS)

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        """Ids of `text` without BOS; special-token text is plain text unless `parse_special`."""
        tokenizer = self.tokenizer if parse_special else self.plain
        return list(tokenizer.encode(text, add_special_tokens=False).ids)

    @torch.no_grad()
    def logprobs(self, ids: Sequence[int]) -> np.ndarray:
        """log p(next token) at every position of `ids`: [len(ids), vocab], float64."""
        logits = self.model(torch.tensor([list(ids)]))[0].double()
        return torch.log_softmax(logits, dim=-1).numpy()

    @torch.no_grad()
    def perplexity(self, ids: Sequence[int], n_ctx: int, n_chunks: int) -> float:
        """Perplexity exactly as llama-perplexity computes it (default mode).

        `ids` starts with BOS. The first `n_chunks` windows of `n_ctx` tokens each get BOS as
        their first token; only the second half of every window is scored.
        """
        windows = torch.tensor(list(ids[: n_chunks * n_ctx])).view(n_chunks, n_ctx)
        targets = windows[:, 1:].clone()
        windows[:, 0] = self.bos_id
        first, picked = n_ctx // 2, []
        for start in range(0, n_chunks, PPL_BATCH):
            batch = slice(start, start + PPL_BATCH)
            logprobs = torch.log_softmax(self.model(windows[batch]).double(), dim=-1)[:, :-1]
            picked.append(logprobs.gather(-1, targets[batch][..., None])[..., 0][:, first:])
        return float(torch.exp(-torch.cat(picked).mean()))
