"""Log-likelihood scoring of multiple-choice items on the PyTorch export, batched.

Each choice is tokenized as lm-evaluation-harness does (`_encode_pair`: the whole string context +
continuation, split where the context's own tokens end), with BOS first as llama.cpp adds it. A choice's
score is the sum of its continuation tokens' log-probabilities; the item's picks under three rules are:

- `sum`: the largest sum (lm-eval `acc`);
- `chars`: the largest sum per character of the continuation (lm-eval `acc_norm`, "byte-length
  normalised" in its docs: it divides by `len(continuation)`);
- `tokens`: llama-perplexity's rule (tools/perplexity/perplexity.cpp, `multiple_choice_score`,
  `hellaswag_score`, `winogrande_score`): the mean log-probability of the tokens after the prefix shared by
  every choice; for Winogrande the tokens after the filled blank, without the last one. It is what the
  GGUFs are compared with, so a GGUF and PyTorch are judged by the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import Progress

from converter.reference import Reference
from evaluation.tasks import Item

BATCH_TOKENS = 4096  # padded tokens per forward pass: bounds the logits of a batch ([tokens, vocab] floats)
WINOGRANDE_MIN_TRAILING = (
    3  # llama.cpp's k_min_trailing_ctx: fewer trailing tokens score from the shared prefix
)


@dataclass(frozen=True)
class Choice:
    """One choice of an item: its token ids (BOS first) and the log-probability of each id from `start` on."""

    ids: tuple[int, ...]
    n_context: int  # ids of BOS + the context; the continuation is ids[n_context:]
    start: int  # first id whose log-probability is in `logprobs`
    logprobs: tuple[float, ...]  # log p(ids[k] | ids[:k]) for k in start..len(ids)-1
    greedy: bool  # every continuation id is the model's argmax
    chars: int  # characters of the continuation

    def logprob_sum(self, first: int, end: int | None = None) -> float:
        """Sum of the log-probabilities of ids[first:end]."""
        return float(sum(self.logprobs[first - self.start : None if end is None else end - self.start]))

    @property
    def loglik(self) -> float:
        """Sum of the continuation's log-probabilities."""
        return self.logprob_sum(self.n_context)


@dataclass(frozen=True)
class Scored:
    """An item with its choices scored; the picks under each rule (see the module docstring)."""

    item: Item
    choices: tuple[Choice, ...]

    @property
    def loglik(self) -> list[float]:
        return [c.loglik for c in self.choices]

    def pick(self, rule: str) -> int:
        """The chosen index under `rule` ("sum", "chars" or "tokens"); first of equals, as numpy argmax."""
        if rule == "sum":
            values = self.loglik
        elif rule == "chars":
            values = [c.loglik / max(c.chars, 1) for c in self.choices]
        elif rule == "tokens":
            values = self.llama_means()
        else:
            raise ValueError(f"unknown rule {rule}")
        return int(np.argmax(values))

    def correct(self, rule: str) -> bool:
        if self.item.kind == "greedy":
            return self.choices[0].greedy
        return self.pick(rule) == self.item.gold

    def llama_means(self) -> list[float]:
        """Each choice's mean log-probability as llama-perplexity computes it."""
        prefix = common_prefix([c.ids for c in self.choices])
        if self.item.kind != "partial":
            return [c.logprob_sum(prefix) / max(1, len(c.ids) - prefix) for c in self.choices]
        skip_choice = all(len(c.ids) - prefix > WINOGRANDE_MIN_TRAILING for c in self.choices)
        means = []
        for c in self.choices:
            base = c.n_context if skip_choice else prefix
            last = 1 if len(c.ids) - base > 1 else 0
            means.append(c.logprob_sum(base, len(c.ids) - last) / max(1, len(c.ids) - base - last))
        return means


def common_prefix(sequences: Sequence[Sequence[object]]) -> int:
    """Length of the prefix all `sequences` share."""
    shortest = min(len(s) for s in sequences)
    for k in range(shortest):
        if any(s[k] != sequences[0][k] for s in sequences[1:]):
            return k
    return shortest


def encode_choices(ref: Reference, item: Item, max_len: int) -> list[tuple[list[int], int, int]]:
    """Per choice: (ids with BOS, ids of BOS + context, first id to score), cut from the left to `max_len`.

    The first scored id is where the choices part (llama.cpp's rule needs from there) or where the
    continuation starts, whichever is earlier.
    """
    encoded = []
    for choice in range(item.choices):
        context, continuation = item.pair(choice)
        stripped = context.rstrip(" ")  # lm-eval moves trailing spaces of the context into the continuation
        continuation = context[len(stripped) :] + continuation
        whole = [ref.bos_id, *ref.encode(stripped + continuation)]
        n_context = 1 + len(ref.encode(stripped))
        encoded.append((whole, n_context))
    prefix = common_prefix([ids for ids, _ in encoded])
    result = []
    for ids, n_context in encoded:
        start = max(1, min(prefix, n_context))
        cut = max(0, len(ids) - max_len)
        if cut:  # keep BOS and the last max_len - 1 ids: the continuation is what is scored
            ids = [ids[0], *ids[1 + cut :]]
            n_context, start = max(1, n_context - cut), max(1, start - cut)
        result.append((ids, n_context, start))
    return result


@torch.no_grad()
def score_items(
    ref: Reference, items: Sequence[Item], max_len: int, progress: Progress | None = None
) -> list[Scored]:
    """Every choice of every item scored by `ref`'s model, in batches of about BATCH_TOKENS padded tokens.

    Sequences are sorted by length so a batch pads little; right padding never changes a causal model's
    log-probabilities at earlier positions.
    """
    jobs = []  # (item index, choice index, ids, n_context, start, chars)
    for i, item in enumerate(items):
        for c, (ids, n_context, start) in enumerate(encode_choices(ref, item, max_len)):
            jobs.append((i, c, ids, n_context, start, len(item.pair(c)[1])))
    order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][2]), reverse=True)
    results: dict[tuple[int, int], Choice] = {}
    task = progress.add_task(f"scoring {items[0].task}", total=len(jobs)) if progress and items else None
    at = 0
    while at < len(order):
        width = len(jobs[order[at]][2])
        batch = order[at : at + max(1, BATCH_TOKENS // width)]
        at += len(batch)
        tokens = torch.zeros(len(batch), width, dtype=torch.long)
        for row, j in enumerate(batch):
            ids = jobs[j][2]
            tokens[row, : len(ids)] = torch.tensor(ids)
        logits = ref.model(tokens)
        for row, j in enumerate(batch):
            i, c, ids, n_context, start, chars = jobs[j]
            # log p(ids[k]) comes from the logits at k - 1; only the scored positions, in float64
            rows = torch.log_softmax(logits[row, start - 1 : len(ids) - 1].double(), dim=-1)
            targets = torch.tensor(ids[start:])
            logprobs = rows.gather(-1, targets[:, None])[:, 0]
            greedy = bool((rows.argmax(-1) == targets)[n_context - start :].all())
            results[i, c] = Choice(tuple(ids), n_context, start, tuple(logprobs.tolist()), greedy, chars)
        if task is not None and progress is not None:
            progress.advance(task, len(batch))
    return [Scored(item, tuple(results[i, c] for c in range(item.choices))) for i, item in enumerate(items)]
