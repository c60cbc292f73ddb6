"""The benchmarks step of `chakor eval`: tasks scored on the PyTorch export, then the same items on each GGUF.

PyTorch gives each task's accuracy (summed log-likelihood) and accuracy_norm (per character), centred on the
task's chance; CORE is their mean (evaluation/core.py). Every GGUF then runs the same items through
llama-perplexity (evaluation/llama_mc.py), and its picks are compared with PyTorch's under llama-perplexity's
own rule. `--predictions` writes one JSON line per item and model, streamed as the items are scored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from common.cli import console
from converter.reference import Reference
from evaluation import core, llama_mc, scoring
from evaluation.report import Benchmarks, GgufChoices, TaskResult
from evaluation.scoring import Scored
from evaluation.tasks import TASKS, Item

SCORING = (
    "zero-shot, lm-evaluation-harness prompts; accuracy: largest summed log-likelihood of the continuation "
    "(lm-eval acc), accuracy_norm: per character (lm-eval acc_norm), Winogrande by partial scoring, LAMBADA "
    "by greedy last-word match; GGUFs through llama-perplexity, compared with PyTorch under its rule "
    "(mean log-probability per token after the shared prefix)"
)
LLAMA_NO_MODE = "llama-perplexity has no greedy last-word mode"


@dataclass(frozen=True)
class TaskItems:
    """A task's items and where they came from."""

    name: str
    source: str
    items: list[Item]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )  # fmt: skip


def _pytorch_line(scored: Scored, headline_rule: str) -> dict[str, Any]:
    item = scored.item
    return {
        "task": item.task,
        "index": item.index,
        "gold": item.gold,
        "pred": (0 if scored.choices[0].greedy else None)
        if item.kind == "greedy"
        else scored.pick(headline_rule),
        "norm": headline_rule,
        "context": list(item.contexts) if item.kind == "partial" else item.contexts[0],
        "continuations": list(item.continuations),
        "loglik": scored.loglik,
        "model": "pytorch",
    }


def _result(
    task: TaskItems, scored: Sequence[Scored], ggufs: tuple[GgufChoices, ...], note: str | None
) -> TaskResult:
    spec = TASKS[task.name]
    n = len(scored)
    accuracy = sum(s.correct("sum") for s in scored) / n
    # acc_norm is the same as acc where every choice has the same continuation (Winogrande) or one (LAMBADA)
    norm = None if spec.headline == "accuracy" else sum(s.correct("chars") for s in scored) / n
    headline = norm if norm is not None else accuracy
    return TaskResult(
        task=task.name,
        source=task.source,
        n=n,
        accuracy=accuracy,
        accuracy_norm=norm,
        chance=spec.chance,
        centered=core.centered(headline, spec.chance),
        headline=spec.headline,
        ggufs=ggufs,
        llama_note=note,
    )


def run_benchmarks(
    ref: Reference,
    tasks: Sequence[TaskItems],
    quants: Mapping[str, Path],
    context: int,
    threads: int,
    server_bin: Path | None,
    predictions: Path | None = None,
) -> Benchmarks:
    """Score every task on `ref`, then on each GGUF of `quants` (by quant type); write `predictions` if given."""
    results = []
    with (
        _progress() as progress,
        open(predictions, "w", encoding="utf-8") if predictions is not None else nullcontext() as out,
    ):
        for task in tasks:
            scored = scoring.score_items(ref, task.items, context, progress)
            rule = "chars" if TASKS[task.name].headline == "accuracy_norm" else "sum"
            _write(out, (_pytorch_line(s, rule) for s in scored))
            mode = llama_mc.mode_for(scored)
            ggufs = []
            if mode is not None:
                bar = progress.add_task(f"{task.name} on the GGUFs", total=len(quants))
                for quant, path in quants.items():
                    picks, kept = llama_mc.gguf_picks(path, scored, context, threads, server_bin)
                    run = [scored[i] for i in kept]
                    ggufs.append(
                        GgufChoices(
                            file=path.name,
                            quant=quant,
                            mode=picks.mode,
                            n=picks.n,
                            accuracy=picks.accuracy,
                            pytorch_accuracy=sum(s.correct("tokens") for s in run) / len(run),
                            agreement=picks.agreement,
                            flagged=core.flagged(picks.agreement),
                        )
                    )
                    _write(
                        out,
                        (_gguf_line(s, pick, path.name) for s, pick in zip(run, picks.picks, strict=True)),
                    )
                    progress.advance(bar)
            results.append(_result(task, scored, tuple(ggufs), None if mode else LLAMA_NO_MODE))
    return Benchmarks(
        tasks=tuple(results),
        core=core.core([r.centered for r in results]),
        scoring=SCORING,
        predictions=None if predictions is None else str(predictions),
    )


def _gguf_line(scored: Scored, pick: int | None, model: str) -> dict[str, Any]:
    """A GGUF's line: its pick under llama-perplexity's rule (None where its output does not tell)."""
    line = _pytorch_line(scored, "tokens")
    return line | {"pred": pick, "loglik": None, "model": model}


def _write(out: IO[str] | None, lines: Any) -> None:
    if out is not None:
        out.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
