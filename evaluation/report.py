"""The eval report as types; eval.json and eval.md; finding the report that vouches for a GGUF.

Kept free of torch and llama.cpp imports: the backend and `chakor up` read reports with it.
eval.json's keys are listed in docs/interfaces.md ("Eval report"): `EvalReport.to_dict` writes exactly
those, and `read_report` reads them back into an `EvalReport`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from common.hashing import sha256_file
from evaluation.core import MAX_FLIPS
from evaluation.gates import Gate

EVAL_JSON = "eval.json"
EVAL_MD = "eval.md"
VERSION = 1
Part = TypeVar("Part")


def _from_json(cls: type[Part], data: dict[str, Any], **parts: Any) -> Part:
    """The dataclass `cls` from its eval.json object: each field from its key, the nested ones from `parts`.

    A key that is missing leaves the field's default; TypeError when the field has none.
    """
    plain = {f.name for f in fields(cls)} - parts.keys()  # type: ignore[arg-type]
    return cls(**{name: value for name, value in data.items() if name in plain}, **parts)


@dataclass(frozen=True)
class KldFigures:
    """One quant against the f32 base as llama-perplexity --kl-divergence printed it (same top as a fraction)."""

    mean_kld: float
    mean_kld_error: float
    max_kld: float
    p99_kld: float
    median_kld: float
    same_top: float
    same_top_error: float
    ppl_quant: float
    ppl_base: float
    ppl_ratio: float
    ppl_ratio_error: float

    def to_dict(self) -> dict[str, float]:
        """These figures only (a subclass's window counts are not row keys)."""
        return {f.name: getattr(self, f.name) for f in fields(KldFigures)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KldFigures:
        """The figures among `data`'s keys (a quant table row's, or a KldStats's)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class RowSpeed:
    """llama-bench's tokens/s of one GGUF on the threads `chakor up` serves with."""

    prompt_tps: float
    gen_tps: float
    threads: int


@dataclass(frozen=True)
class QuantRow:
    """One GGUF of the quant table: which file, its gate and verdict, its KL divergence and speed."""

    quant: str
    file: str
    size_bytes: int
    sha256: str
    gate: Gate | None  # None for the f32 base
    passed: bool | None
    verdict: str  # "base" (f32 reproducing PyTorch), "pass" or "FAIL"
    message: str | None
    kld: KldFigures | None = None  # None for the f32 base
    speed: RowSpeed | None = None  # None when the eval ran without llama-bench

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "quant": self.quant,
            "file": self.file,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "gate": None if self.gate is None else asdict(self.gate),
            "passed": self.passed,
            "verdict": self.verdict,
            "message": self.message,
        }
        if self.kld is not None:
            data.update(self.kld.to_dict())
        if self.speed is not None:
            data["speed"] = asdict(self.speed)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantRow:
        gate, speed = data["gate"], data.get("speed")
        return _from_json(
            cls,
            data,
            gate=None if gate is None else Gate(**gate),
            kld=KldFigures.from_dict(data) if "mean_kld" in data else None,
            speed=None if speed is None else RowSpeed(**speed),
        )


@dataclass(frozen=True)
class F32Check:
    """llama.cpp's perplexity of the f32 GGUF against PyTorch's on the same windows."""

    passed: bool
    llama_ppl: float
    pytorch_ppl: float
    relative_delta: float
    windows: int
    message: str


@dataclass(frozen=True)
class Quantization:
    """The KL-divergence part: what was scored, f32 against PyTorch, and the quant table."""

    n_ctx: int
    chunks: int
    scored_tokens: int
    min_scored_tokens: int
    f32_vs_pytorch: F32Check
    rows: tuple[QuantRow, ...]
    text_tokens: dict[str, int]  # tokens of the scored text from each split: val, then train
    threads: int
    k_quants_skipped: str | None  # why K-quants were not made; None when they apply
    base: str = "f32"

    @property
    def enough_tokens(self) -> bool:
        return self.scored_tokens >= self.min_scored_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "n_ctx": self.n_ctx,
            "chunks": self.chunks,
            "scored_tokens": self.scored_tokens,
            "min_scored_tokens": self.min_scored_tokens,
            "enough_tokens": self.enough_tokens,
            "f32_vs_pytorch": asdict(self.f32_vs_pytorch),
            "rows": [row.to_dict() for row in self.rows],
            "text_tokens": self.text_tokens,
            "threads": self.threads,
            "k_quants_skipped": self.k_quants_skipped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Quantization:
        return _from_json(
            cls,
            data,
            f32_vs_pytorch=F32Check(**data["f32_vs_pytorch"]),
            rows=tuple(QuantRow.from_dict(row) for row in data["rows"]),
        )


@dataclass(frozen=True)
class ValidationResult:
    """Loss and bits per byte of the PyTorch model over the val split of `data`."""

    loss: float  # nats per token
    perplexity: float
    bits_per_byte: float
    tokens: int
    bytes: int
    window: int
    data: str


@dataclass(frozen=True)
class QAMode:
    """Held-out questions asked in one search mode, scored by token-F1 (None when nothing was asked)."""

    mode: str
    asked: int
    skipped: int  # `documents` mode: questions without documents
    mean_f1: float | None
    exact_match: float | None
    examples: list[dict[str, Any]]


@dataclass(frozen=True)
class QAResult:
    """The held-out questions part: which set, asked of which GGUF, and the scores per mode."""

    gguf: str
    set: str | None
    items: int
    modes: dict[str, QAMode]
    prompts_too_long: int | None = None  # None when no set was given
    results_dropped_to_fit: int | None = None
    note: str | None = None  # why nothing was asked

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "gguf": self.gguf,
            "set": self.set,
            "items": self.items,
            "modes": {name: asdict(mode) for name, mode in self.modes.items()},
        }
        optional = {
            "prompts_too_long": self.prompts_too_long,
            "results_dropped_to_fit": self.results_dropped_to_fit,
            "note": self.note,
        }
        return data | {key: value for key, value in optional.items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QAResult:
        return _from_json(cls, data, modes={name: QAMode(**mode) for name, mode in data["modes"].items()})


@dataclass(frozen=True)
class Sample:
    """A fixed question and the model's greedy answer."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class GgufChoices:
    """One GGUF on a task through llama-perplexity: its accuracy and its agreement with PyTorch's choices.

    Both sides use llama-perplexity's rule (mean log-probability per token, see evaluation/scoring.py), so
    `agreement` measures the weights and kernels, not a difference in scoring.
    """

    file: str
    quant: str
    mode: str  # llama-perplexity's input: hellaswag, winogrande or multiple-choice
    n: int
    accuracy: float  # the GGUF's, against the gold answers
    pytorch_accuracy: float  # PyTorch's under the same rule, on the same items
    agreement: float  # share of items where the GGUF picks what PyTorch picks
    flagged: bool  # agreement below 1 - evaluation.core.MAX_FLIPS


@dataclass(frozen=True)
class TaskResult:
    """One benchmark task scored on the PyTorch export (and on each GGUF where llama-perplexity can)."""

    task: str
    source: str
    n: int
    accuracy: float  # lm-eval acc: the largest summed log-likelihood
    accuracy_norm: float | None  # lm-eval acc_norm: per character of the continuation; None where undefined
    chance: float
    centered: float  # of the headline metric
    headline: str  # "accuracy" or "accuracy_norm": what `centered` and CORE use
    ggufs: tuple[GgufChoices, ...] = ()
    llama_note: str | None = None  # why the GGUFs were not compared on this task

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ggufs": [asdict(g) for g in self.ggufs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        return _from_json(cls, data, ggufs=tuple(GgufChoices(**g) for g in data.get("ggufs", [])))


@dataclass(frozen=True)
class Benchmarks:
    """The multiple-choice benchmarks part: per task results and CORE (evaluation/core.py)."""

    tasks: tuple[TaskResult, ...]
    core: float | None
    scoring: str  # how items were scored, in words
    predictions: str | None  # the --predictions file, when one was written

    @property
    def flagged(self) -> list[str]:
        """'quant on task' for each GGUF that flips too many of PyTorch's choices."""
        return [f"{g.quant} on {t.task}" for t in self.tasks for g in t.ggufs if g.flagged]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": [task.to_dict() for task in self.tasks],
            "core": self.core,
            "core_tasks": len(self.tasks),
            "scoring": self.scoring,
            "predictions": self.predictions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Benchmarks:
        return _from_json(cls, data, tasks=tuple(TaskResult.from_dict(t) for t in data["tasks"]))


@dataclass(frozen=True)
class EvalReport:
    """Everything `chakor eval` found about one export and its GGUFs (eval.json as types)."""

    created: str
    export: str
    serve: str | None  # the smallest quant that passed its gate
    model: dict[str, Any]  # the model config and its `parameters`
    lineage: dict[str, Any]
    validation: ValidationResult
    quantization: Quantization
    qa: QAResult
    samples: tuple[Sample, ...]
    plots: dict[str, str]  # PNG file names beside eval.json, by plot
    seconds: dict[str, float]  # per part
    total_seconds: float
    benchmarks: Benchmarks | None = None  # None when no --tasks were given
    version: int = VERSION

    @property
    def passed(self) -> bool:
        """No gate failed, and f32 reproduces PyTorch."""
        return all(row.passed is not False for row in self.quantization.rows)

    def to_dict(self) -> dict[str, Any]:
        """eval.json."""
        return {
            "version": self.version,
            "created": self.created,
            "export": self.export,
            "passed": self.passed,
            "serve": self.serve,
            "model": self.model,
            "lineage": self.lineage,
            "validation": asdict(self.validation),
            "quantization": self.quantization.to_dict(),
            "qa": self.qa.to_dict(),
            "samples": [asdict(sample) for sample in self.samples],
            "plots": self.plots,
            "seconds": self.seconds,
            "total_seconds": self.total_seconds,
            "benchmarks": None if self.benchmarks is None else self.benchmarks.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        """The report of an eval.json's contents; KeyError or TypeError when it lacks a part."""
        return _from_json(
            cls,
            data,
            validation=ValidationResult(**data["validation"]),
            quantization=Quantization.from_dict(data["quantization"]),
            qa=QAResult.from_dict(data["qa"]),
            samples=tuple(Sample(**sample) for sample in data["samples"]),
            benchmarks=None if data.get("benchmarks") is None else Benchmarks.from_dict(data["benchmarks"]),
        )


def read_report(path: Path) -> EvalReport | None:
    """The report in an eval.json, or None when it is missing or not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None
    try:
        return EvalReport.from_dict(data)
    except (KeyError, TypeError, AttributeError):
        return None


def row_for(report: EvalReport, gguf: Path) -> QuantRow | None:
    """The quant table row of `gguf` (same file name and SHA-256), or None when the report does not cover it."""
    gguf = Path(gguf)
    rows = [row for row in report.quantization.rows if row.file == gguf.name]
    if not rows or not gguf.is_file():
        return None
    if rows[0].size_bytes != gguf.stat().st_size or rows[0].sha256 != sha256_file(gguf):
        return None
    return rows[0]


def report_for(gguf: Path) -> tuple[EvalReport | None, QuantRow | None]:
    """(the eval.json next to `gguf`, its row for `gguf`): either is None when there is none."""
    report = read_report(Path(gguf).parent / EVAL_JSON)
    return report, (row_for(report, gguf) if report else None)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(report: EvalReport) -> str:
    """eval.md: the model card as a person reads it."""
    val, quant, qa = report.validation, report.quantization, report.qa
    lines = [
        f"# Evaluation of `{report.export}`",
        "",
        f"Verdict: **{'all gates passed' if report.passed else 'a gate FAILED'}**; serve: "
        f"**{report.serve or 'nothing passed'}**. Evaluated in {report.total_seconds:.1f} s.",
        "",
        "## Validation",
        "",
        f"- loss {val.loss:.4f} nats/token (perplexity {val.perplexity:.2f}) over {val.tokens:,} "
        f"tokens = {val.bytes:,} bytes of the val split",
        f"- **bits per byte {val.bits_per_byte:.4f}**",
        "",
        "## Quantization (KL divergence vs the f32 GGUF, llama-perplexity)",
        "",
        f"{quant.scored_tokens:,} scored tokens ({quant.chunks} windows of {quant.n_ctx}); "
        f"f32 reproduces PyTorch: {quant.f32_vs_pytorch.message}",
        "",
        "| quant | size | mean KLD | 99% KLD | same top | PPL ratio | gate | verdict | prompt tok/s | gen tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in quant.rows:
        kld, gate, speed = row.kld, row.gate, row.speed
        cells = [row.quant, f"{row.size_bytes / 1e6:.2f} MB"]
        if kld is None:
            cells += ["-"] * 4
        else:
            cells += [
                f"{kld.mean_kld:.3g}",
                f"{kld.p99_kld:.3g}",
                f"{kld.same_top:.2%}",
                f"{kld.ppl_ratio:.5f}",
            ]
        cells += ["-" if gate is None else f"{gate.max_mean_kld:g}", row.verdict]
        cells += ["-", "-"] if speed is None else [f"{speed.prompt_tps:.0f}", f"{speed.gen_tps:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if quant.k_quants_skipped:
        lines += ["", f"K-quants not evaluated: {quant.k_quants_skipped}."]
    lines += ["", f"## Held-out questions (token-F1, asked of {qa.gguf or '-'})", ""]
    if qa.modes:
        lines.append(f"Question set: `{qa.set}` ({qa.items} questions).")
        lines.append("")
        for mode in qa.modes.values():
            lines.append(
                f"- search {mode.mode}: mean F1 **{_num(mode.mean_f1, '.3f')}**, exact match "
                f"{_num(mode.exact_match, '.1%')} ({mode.asked} asked, {mode.skipped} without documents)"
            )
    else:
        lines.append(qa.note or "no question set")
    if report.benchmarks is not None:
        lines += ["", *benchmarks_markdown(report.benchmarks)]
    lines += ["", "## Sample generations (greedy)", ""]
    for sample in report.samples:
        lines.append(f"- **{sample.prompt}** {sample.completion!r}")
    lines += ["", "## Time", ""]
    lines += [f"- {name}: {seconds:.1f} s" for name, seconds in report.seconds.items()]
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def benchmarks_markdown(scores: Benchmarks) -> list[str]:
    """The benchmark table and CORE, as eval.md shows them."""
    core = "-" if scores.core is None else f"{scores.core:.4f}"
    lines = [
        "## Benchmarks (multiple choice, log-likelihood)",
        "",
        f"**CORE {core}** (centred accuracy mean over {len(scores.tasks)} tasks). Scoring: {scores.scoring}.",
        "",
        "| task | n | accuracy | accuracy_norm | chance | centred | GGUF: accuracy / same choice as PyTorch |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in scores.tasks:
        ggufs = "; ".join(
            f"{g.quant} {_pct(g.accuracy)} / {_pct(g.agreement)}{' **FLAGGED**' if g.flagged else ''}"
            for g in task.ggufs
        )
        cells = [task.task, str(task.n), _pct(task.accuracy), _pct(task.accuracy_norm), _pct(task.chance)]
        cells += [f"{task.centered:+.3f}", ggufs or (task.llama_note or "-")]
        lines.append("| " + " | ".join(cells) + " |")
    if scores.flagged:
        flips = f"{MAX_FLIPS:.0%}"
        lines += ["", f"GGUFs that flip more than {flips} of PyTorch's choices: {', '.join(scores.flagged)}."]
    if scores.predictions:
        lines += ["", f"Predictions: `{scores.predictions}`."]
    return lines


def write(report: EvalReport, out_dir: Path) -> Path:
    """Write eval.json and eval.md into `out_dir`; returns the eval.json path."""
    out_dir = Path(out_dir)
    path = out_dir / EVAL_JSON
    path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / EVAL_MD).write_text(markdown(report), encoding="utf-8")
    return path


@dataclass(frozen=True)
class ModelCard:
    """The model card's numbers (what GraphQL `model.evaluation` and the admin page show)."""

    passed: bool
    bits_per_byte: float
    val_loss: float
    qa_f1: float | None  # held-out questions without search
    qa_f1_documents: float | None  # with DOCUMENTS search
    qa_questions: int
    recommended: str | None
    served_quant: str | None  # None: the report does not cover the served file
    served_passed: bool | None
    rows: tuple[QuantRow, ...]
    scored_tokens: int
    k_quants_skipped: str | None
    lineage: dict[str, Any]
    created: str
    total_seconds: float
    plots: dict[str, str]
    benchmarks: Benchmarks | None = None


def summary(report: EvalReport, served: QuantRow | None) -> ModelCard:
    """The model card of `report` for the served file's row `served` (None when the report does not cover it)."""
    off, documents = report.qa.modes.get("off"), report.qa.modes.get("documents")
    return ModelCard(
        passed=report.passed,
        bits_per_byte=report.validation.bits_per_byte,
        val_loss=report.validation.loss,
        qa_f1=None if off is None else off.mean_f1,
        qa_f1_documents=None if documents is None else documents.mean_f1,
        qa_questions=report.qa.items,
        recommended=report.serve,
        served_quant=None if served is None else served.quant,
        served_passed=None if served is None else served.passed,
        rows=report.quantization.rows,
        scored_tokens=report.quantization.scored_tokens,
        k_quants_skipped=report.quantization.k_quants_skipped,
        lineage=report.lineage,
        created=report.created,
        total_seconds=report.total_seconds,
        plots=report.plots,
        benchmarks=report.benchmarks,
    )
