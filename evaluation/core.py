"""CORE: the centred accuracy mean of DCLM's in-context suite, as nanochat reports it.

Li et al. 2024, "DataComp-LM" (arXiv:2406.11794), section 3.5 / appendix G: each task's accuracy is
centred on its random baseline, (acc - chance) / (1 - chance), so 0 is chance and 1 is perfect; CORE is
the mean of the centred accuracies. nanochat (karpathy/nanochat, scripts/base_eval.py) computes the same
(`centered_result = (accuracy - 0.01 * random_baseline) / (1.0 - 0.01 * random_baseline)`, then the mean).
Their CORE has 22 tasks and few-shot prompts; ours is the mean over the tasks that were run, zero-shot, and
the report says how many: it is comparable to theirs only task by task.
"""

from __future__ import annotations

from collections.abc import Sequence

# A GGUF that picks differently from PyTorch on more than this share of items is flagged (the f32 GGUF
# agrees on all but near-ties; measured on the test model: 100% over 48 items per task).
MAX_FLIPS = 0.05


def centered(accuracy: float, chance: float) -> float:
    """(accuracy - chance) / (1 - chance): 0 at chance, 1 when every item is right."""
    return (accuracy - chance) / (1 - chance)


def core(centred: Sequence[float]) -> float | None:
    """The mean of the tasks' centred accuracies; None without a task."""
    return sum(centred) / len(centred) if centred else None


def flagged(agreement: float) -> bool:
    """The GGUF flips more than MAX_FLIPS of PyTorch's choices."""
    return agreement < 1 - MAX_FLIPS
