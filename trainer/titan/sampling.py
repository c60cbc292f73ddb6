"""Sampling from the sharded model during validation, with every rank in lockstep.

Under FSDP and TP a forward is a collective: every rank must run it, on inputs of the same shape, the
same number of times. Sampling on every rank from its own logits relies on the logits being
bit-identical: where they are not (another reduction order, another kernel), ranks pick different
tokens, one stops at a stop token while another runs on, their windows grow to different lengths and
the collectives no longer match: the job hangs.

Here only global rank 0 chooses: each step, every rank runs the forward on the same window (the
tokens so far, padded at the end to a multiple of `multiple_of`: the tensor-parallel degree, which
must divide the sequence under sequence parallelism), rank 0 samples from its logits at the last
real token and broadcasts the token id, and every rank appends that id. So every rank holds the same
tokens, runs the same number of forwards of the same shape and stops at the same step: no collective
depends on a rank's own logits or length. The padding is causal-safe: a token after the last real
one cannot change the logits at it.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from trainer.model import Transformer


def next_token(
    logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator | None
) -> int:
    """Greedy for temperature <= 0, else top-k sampling of the next id from `logits` [vocab]."""
    if temperature <= 0:
        return int(logits.argmax())
    values, indices = torch.topk(logits / temperature, min(top_k, logits.numel()))
    probs = F.softmax(values.float(), dim=-1).cpu()
    return int(indices[torch.multinomial(probs, 1, generator=generator)])


@torch.no_grad()
def generate_in_lockstep(
    model: nn.Module,
    prompt: list[int],
    max_new_tokens: int,
    multiple_of: int = 1,
    temperature: float = 0.8,
    top_k: int = 40,
    stop_ids: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue `prompt`; called by every rank with the same arguments, returns the same ids on every
    rank (rank 0's choices). Without a process group, plain sampling. No KV cache: for short samples."""
    transformer = cast(Transformer, model)  # model_spec builds a TitanTransformer (FSDP keeps the class)
    device = transformer.rope_cos.device
    context = transformer.cfg.max_seq_len // multiple_of * multiple_of
    distributed = dist.is_initialized() and dist.get_world_size() > 1
    chooses = not distributed or dist.get_rank() == 0
    ids = list(prompt)
    for _ in range(max_new_tokens):
        window = ids[-context:]
        padded = -(-len(window) // multiple_of) * multiple_of
        tokens = torch.zeros(1, padded, dtype=torch.long, device=device)
        tokens[0, : len(window)] = torch.tensor(window, device=device)
        logits = model(tokens)[0, len(window) - 1]
        choice = torch.tensor(
            [next_token(logits, temperature, top_k, generator) if chooses else 0], device=device
        )
        if distributed:
            dist.broadcast(choice, src=0)
        ids.append(int(choice))
        if ids[-1] in stop_ids:
            break
    return ids[len(prompt) :]
