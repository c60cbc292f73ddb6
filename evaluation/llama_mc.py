"""The benchmark items through llama.cpp: llama-perplexity's --hellaswag, --winogrande, --multiple-choice modes.

Input formats, as tools/perplexity/perplexity.cpp (ggml-org/llama.cpp) reads them:

- `--hellaswag -f FILE`: 6 lines per task: context, gold ending index, the 4 endings; each ending is scored
  as `context + " " + ending`.
- `--winogrande -f FILE`: CSV lines `index,sentence,option1,option2,answer` (answer 1 or 2); the sentence's
  `_` is replaced by each option; a quoted sentence may hold commas, nothing is escaped.
- `--multiple-choice -bf FILE`: little-endian binary: uint32 task count, uint32 byte offset of each task,
  then per task: string question, then two answer sets (mc1, single correct; mc2, unused): uint32 count,
  that many strings, that many int32 labels (1 = correct). A string is uint32 length + UTF-8 bytes.

What it prints per task: multiple-choice only the running accuracy after each task, in file order (so
whether each pick was right), winogrande also the pick itself, hellaswag the running accuracy over the tasks
in an order it shuffles itself (std::mt19937(1), every task once). So:

- multiple-choice: every item is written twice, labelled with its gold answer and then with PyTorch's pick
  (under llama-perplexity's own rule): "right" on the second copy means the GGUF picked what PyTorch picked;
  the GGUF's pick is known when it agrees with PyTorch or gold, or the item has two choices.
- hellaswag: two runs, one file labelled gold and one labelled with PyTorch's picks; the final running
  accuracies are the GGUF's accuracy and its agreement with PyTorch, exactly; its picks are not known.
- winogrande: one run; its picks, hence accuracy and agreement, item by item.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from evaluation.errors import EvalError
from evaluation.kld import ATTEMPTS, perplexity_argv
from evaluation.scoring import Scored, common_prefix

T = TypeVar("T")
# Tasks appended after the real ones and not read: llama-perplexity's log thread drops the last lines it
# queued when the tool exits (measured: the last of 8 Winogrande lines lost on 2 of 2 runs, see kld.py).
PAD_TASKS = 4
# Sequences decoded at once (-np, KV cache unified): the tasks llama-perplexity packs into one batch need
# one per choice. Each costs start-up time (measured on the tiny test model: 0.24 s a run at 16, 1.2 s at
# 128), so 16, or an item's number of choices when larger.
PARALLEL = 16
_RUNNING = {
    "hellaswag": re.compile(r"^(\d+)\t([\d.]+)%\t\[", re.M),
    "multiple-choice": re.compile(r"^(\d+)\t([\d.]+)$", re.M),
}
_WINOGRANDE = re.compile(r"^(\d+)\t[\d.]+\t\s*\S+\s+\S+\s+([12])\s+([12])$", re.M)


@dataclass(frozen=True)
class GgufPicks:
    """A GGUF on a task's items: its accuracy, its agreement with PyTorch, each pick where it is known."""

    mode: str
    n: int  # items run (Winogrande rows a CSV line cannot hold are left out)
    accuracy: float
    agreement: float
    picks: tuple[int | None, ...]  # per item run; None where the output does not tell


def mode_for(items: Sequence[Scored]) -> str | None:
    """The llama-perplexity mode for a task's items; None where it has none (LAMBADA's greedy match)."""
    kinds = {s.item.kind for s in items}
    if kinds == {"partial"}:
        return "winogrande"
    if kinds != {"choice"}:
        return None
    if {s.item.task for s in items} == {"hellaswag"} and all(s.item.choices == 4 for s in items):
        return "hellaswag"
    return "multiple-choice"


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


def hellaswag_text(items: Sequence[Scored], labels: Sequence[int]) -> str:
    """The 6-line tasks, each labelled with `labels[i]`."""
    lines = []
    for scored, label in zip(items, labels, strict=True):
        endings = [_one_line(c.removeprefix(" ")) for c in scored.item.continuations]
        lines += [_one_line(scored.item.contexts[0]), str(label), *endings]
    return "\n".join(lines) + "\n"


def winogrande_parts(scored: Scored) -> tuple[str, str, str, str] | None:
    """(first, option1, option2, second) of a partial item, or None when its CSV line cannot hold it.

    The shared start of the two filled contexts is the text before the blank (a common start of the two
    options joins it: the strings scored are the same).
    """
    contexts, continuation = scored.item.contexts, scored.item.continuations[0]
    first = contexts[0][: common_prefix(contexts)]
    options = [c[len(first) :] for c in contexts]
    fields = [first + "_" + continuation, *options]
    if any('"' in f or "\n" in f for f in fields) or any("," in o or not o for o in options):
        return None
    return first, options[0], options[1], continuation


def winogrande_csv(items: Sequence[Scored]) -> tuple[str, list[int]]:
    """The CSV (then padding) and the positions in `items` of the rows it holds (the others cannot be written)."""
    lines: list[str] = []
    kept: list[int] = []
    for i, scored in enumerate(items):
        parts = winogrande_parts(scored)
        if parts is not None:
            first, option1, option2, second = parts
            lines.append(f'{len(kept)},"{first}_{second}",{option1},{option2},{scored.item.gold + 1}')
            kept.append(i)
    lines += lines[:1] * PAD_TASKS if lines else []
    return "\n".join(lines) + "\n", kept


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<I", len(data)) + data


def multiple_choice_bytes(items: Sequence[Scored]) -> bytes:
    """The binary input: each item twice, labelled gold then with PyTorch's pick (llama's rule), then padding."""
    tasks = []
    for scored in items:
        answers = [c.removeprefix(" ") for c in scored.item.continuations]
        for label in (scored.item.gold, scored.pick("tokens")):
            body = _string(scored.item.contexts[0])
            body += struct.pack("<I", len(answers)) + b"".join(_string(a) for a in answers)
            body += struct.pack(f"<{len(answers)}i", *(int(k == label) for k in range(len(answers))))
            body += struct.pack("<I", 0)  # mc2: no answers
            tasks.append(body)
    tasks += tasks[:1] * PAD_TASKS
    header = 4 + 4 * len(tasks)
    offsets, at = [], header
    for body in tasks:
        offsets.append(at)
        at += len(body)
    return struct.pack(f"<I{len(tasks)}I", len(tasks), *offsets) + b"".join(tasks)


def per_task_right(output: str, mode: str, count: int) -> list[bool] | None:
    """Whether each task was right, from the running accuracies printed; None when lines are missing."""
    running = {int(n): float(pct) for n, pct in _RUNNING[mode].findall(output)}
    if not set(running) >= set(range(1, count + 1)):
        return None
    right, before = [], 0
    for n in range(1, count + 1):
        correct = round(running[n] * n / 100)
        right.append(correct > before)
        before = correct
    return right


def _run(argv: list[str], source: str, parse: Callable[[str], T | None]) -> T:
    """Run llama-perplexity until `parse(output)` is not None (its logger may drop the last lines at exit)."""
    output, code = "", 0
    for _ in range(ATTEMPTS):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        output, code = done.stdout + done.stderr, done.returncode
        if code == 0:
            parsed = parse(output)
            if parsed is not None:
                return parsed
    tail = "\n".join(output.strip().splitlines()[-12:])
    raise EvalError(f"{source}: llama-perplexity did not score every task (exit {code}):\n{tail}")


def _argv(model: Path, n_ctx: int, threads: int, server_bin: Path | None, choices: int) -> list[str]:
    """llama-perplexity as the KL runs start it, with a sequence per choice and a unified KV cache."""
    return [*perplexity_argv(model, n_ctx, threads, server_bin), "-np", str(max(PARALLEL, choices)), "-kvu"]


def gguf_picks(
    model: Path, items: Sequence[Scored], n_ctx: int, threads: int, server_bin: Path | None = None
) -> tuple[GgufPicks, list[int]]:
    """`model` on the items in their llama-perplexity mode: its picks, and the positions of the items it ran."""
    mode = mode_for(items)
    if mode is None:
        raise EvalError(f"{items[0].item.task}: llama-perplexity has no mode for these items")
    argv = _argv(model, n_ctx, threads, server_bin, max(s.item.choices for s in items))
    with tempfile.TemporaryDirectory(prefix="chakor-mc-") as tmp:
        path = Path(tmp) / "tasks"
        if mode == "winogrande":
            text, kept = winogrande_csv(items)
            if not kept:
                raise EvalError(f"{items[0].item.task}: no item can be written as llama-perplexity CSV")
            path.write_text(text, encoding="utf-8")
            return _winogrande(
                [*argv, "--winogrande", "-f", str(path)], str(model), [items[i] for i in kept]
            ), kept
        if mode == "hellaswag":
            return _hellaswag(argv, str(model), items, path), list(range(len(items)))
        path.write_bytes(multiple_choice_bytes(items))
        right = _run(
            [*argv, "--multiple-choice", "-bf", str(path)],
            str(model),
            lambda out: per_task_right(out, "multiple-choice", 2 * len(items)),
        )
    gold_right, agrees = right[0::2], right[1::2]
    picks: list[int | None] = []
    for scored, is_gold, agree in zip(items, gold_right, agrees, strict=True):
        ours, gold = scored.pick("tokens"), scored.item.gold
        if agree:
            picks.append(ours)
        elif is_gold:
            picks.append(gold)
        elif scored.item.choices == 2 and ours == gold:
            picks.append(1 - ours)
        else:
            picks.append(None)
    n = len(items)
    return GgufPicks(mode, n, sum(gold_right) / n, sum(agrees) / n, tuple(picks)), list(range(n))


def _hellaswag(argv: list[str], source: str, items: Sequence[Scored], path: Path) -> GgufPicks:
    """Two runs: labelled gold (accuracy), labelled with PyTorch's picks (agreement); the final line of each."""
    n, finals = len(items), []
    for labels in ([s.item.gold for s in items], [s.pick("tokens") for s in items]):
        path.write_text(hellaswag_text(items, labels), encoding="utf-8")

        def final(output: str) -> float | None:
            running = {int(k): float(pct) for k, pct in _RUNNING["hellaswag"].findall(output)}
            return running[n] / 100 if n in running else None

        finals.append(
            _run([*argv, "--hellaswag", "--hellaswag-tasks", str(n), "-f", str(path)], source, final)
        )
    return GgufPicks("hellaswag", n, finals[0], finals[1], (None,) * n)


def _winogrande(argv: list[str], source: str, items: Sequence[Scored]) -> GgufPicks:
    def parse(output: str) -> list[int] | None:
        found = {int(k): int(pick) - 1 for k, pick, _ in _WINOGRANDE.findall(output)}
        wanted = range(1, len(items) + 1)
        return [found[k] for k in wanted] if set(found) >= set(wanted) else None

    picks = _run(argv, source, parse)
    n = len(items)
    right = sum(p == s.item.gold for p, s in zip(picks, items, strict=True))
    agree = sum(p == s.pick("tokens") for p, s in zip(picks, items, strict=True))
    return GgufPicks("winogrande", n, right / n, agree / n, tuple(picks))
