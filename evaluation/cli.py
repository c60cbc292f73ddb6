"""`chakor eval`: evaluate an export and its GGUFs; exit 1 when a quantization gate fails, 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from common.cli import FAILED, console, fail, settings_or_exit, user_errors
from documents.index import DocumentIndex
from evaluation.errors import EvalError
from evaluation.report import EVAL_JSON, Benchmarks, EvalReport
from evaluation.tasks import parse_tasks


def quant_table(report: EvalReport) -> Table:
    """The quant table as the terminal shows it."""
    table = Table(
        "quant", "MB", "mean KLD", "99% KLD", "same top", "PPL ratio", "gate", "verdict", "prompt t/s", "gen t/s",
        title=f"KL divergence vs f32 over {report.quantization.scored_tokens:,} tokens",
    )  # fmt: skip
    for row in report.quantization.rows:
        kld, speed = row.kld, row.speed
        table.add_row(
            row.quant,
            f"{row.size_bytes / 1e6:.2f}",
            "-" if kld is None else f"{kld.mean_kld:.3g}",
            "-" if kld is None else f"{kld.p99_kld:.3g}",
            "-" if kld is None else f"{kld.same_top:.2%}",
            "-" if kld is None else f"{kld.ppl_ratio:.5f}",
            "-" if row.gate is None else f"{row.gate.max_mean_kld:g}",
            {"pass": "[green]pass", "FAIL": "[red]FAIL", "base": "base"}[row.verdict],
            "-" if speed is None else f"{speed.prompt_tps:.0f}",
            "-" if speed is None else f"{speed.gen_tps:.0f}",
        )
    return table


def benchmark_table(scores: Benchmarks) -> Table:
    """The benchmark table: PyTorch's accuracies, then each GGUF's accuracy and agreement with PyTorch."""
    core = "-" if scores.core is None else f"{scores.core:.4f}"
    table = Table(
        "task", "n", "acc", "acc_norm", "chance", "centred", "GGUFs: acc / same choice as PyTorch",
        title=f"benchmarks: CORE {core} over {len(scores.tasks)} tasks",
    )  # fmt: skip
    for task in scores.tasks:
        ggufs = ", ".join(
            f"{'[red]' if g.flagged else ''}{g.quant} {g.accuracy:.1%} / {g.agreement:.1%}"
            f"{' FLAGGED[/]' if g.flagged else ''}"
            for g in task.ggufs
        )
        table.add_row(
            task.task,
            str(task.n),
            f"{task.accuracy:.1%}",
            "-" if task.accuracy_norm is None else f"{task.accuracy_norm:.1%}",
            f"{task.chance:.0%}",
            f"{task.centered:+.3f}",
            ggufs or escape(task.llama_note or "-"),
        )
    return table


def print_report(report: EvalReport, out_dir: Path) -> None:
    """What the terminal shows of a finished evaluation."""
    val = report.validation
    console.print(f"validation: loss {val.loss:.4f}, bits per byte {val.bits_per_byte:.4f}")
    for mode in report.qa.modes.values():
        f1 = "-" if mode.mean_f1 is None else f"{mode.mean_f1:.3f}"
        console.print(f"held-out QA, search {mode.mode}: token-F1 {f1} over {mode.asked} questions")
    console.print(quant_table(report))
    if report.benchmarks is not None:
        console.print(benchmark_table(report.benchmarks))
    skipped = report.quantization.k_quants_skipped
    if skipped:
        console.print(f"[dim]K-quants not evaluated: {escape(skipped)}[/]")
    for row in report.quantization.rows:
        if row.passed is False:
            console.print(f"[red]{escape(row.message or row.quant + ': f32 does not reproduce PyTorch')}[/]")
    console.print(f"serve: {report.serve or 'nothing passed'}; eval took {report.total_seconds:.1f} s")
    console.print(f"report: {out_dir / EVAL_JSON}")


@user_errors(EvalError)
def eval_command(
    export: Path = typer.Argument(..., help="export directory (chakor export)"),
    ggufs: list[Path] = typer.Argument(..., help="GGUFs converted from it; one must be f32 (the base)"),
    data: Path = typer.Option(
        ..., "--data", help="data directory (chakor data tokenize) whose val split is scored"
    ),
    qa_path: Path = typer.Option(
        None, "--qa", help="question set: JSONL of {question, reference, documents?}"
    ),
    qa_mode: list[str] = typer.Option(["off", "documents"], "--qa-mode", help="off and/or documents"),
    documents: Path = typer.Option(
        None, "--documents", help="document index (chakor docs) searched in the documents QA mode"
    ),
    run: list[Path] = typer.Option([], "--run", help="training run folder(s) whose loss curves to draw"),
    out: Path = typer.Option(
        None, "--out", help="where eval.json, eval.md, PNGs go (default: the first GGUF's folder)"
    ),
    min_kld_tokens: int = typer.Option(16384, help="tokens scored for KL divergence (at least)"),
    max_val_tokens: int = typer.Option(65536, help="val tokens for loss and bits per byte"),
    bench: bool = typer.Option(True, help="measure tokens/s of each GGUF with llama-bench"),
    tasks: str = typer.Option(
        "",
        "--tasks",
        help="benchmarks as NAME=SOURCE[,NAME=SOURCE...]: hellaswag, arc_easy, arc_challenge, piqa, winogrande, "
        "openbookqa, lambada, mmlu from a .jsonl/.parquet file or hf:NAME?split=...&config=... in the dataset's "
        "published schema; heldout=val for a cloze task over the --data val split",
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="items per benchmark task (default: all)"),
    predictions: Path = typer.Option(
        None, "--predictions", help="write every scored benchmark item, per model, to this JSONL"
    ),
) -> None:
    """Validation bits per byte, held-out QA F1, samples, KL-divergence gates per quant, serving speed."""
    # imported here: evaluation.run pulls in torch, and `chakor` imports this module at every start
    from evaluation.run import EvalOptions, evaluate

    settings = settings_or_exit()
    if predictions is not None and not predictions.parent.is_dir():
        fail(f"--predictions {predictions}: no folder {predictions.parent}")
    provider = None
    if documents is not None:
        provider = DocumentIndex(documents)
        if not provider.exists:
            fail(f"no document index at {documents}")
    options = EvalOptions(
        export_dir=export,
        ggufs=ggufs,
        data_dir=data,
        out_dir=out or ggufs[0].parent,
        qa_path=qa_path,
        qa_modes=qa_mode,
        provider=provider,
        runs=run,
        min_kld_tokens=min_kld_tokens,
        max_val_tokens=max_val_tokens,
        bench=bench,
        tasks=parse_tasks(tasks),
        limit=limit,
        predictions=predictions,
        system_prompt=settings.chat_system_prompt,
        max_tokens=settings.chat_max_tokens,
        serving_threads=settings.llama_threads,
        llama_server_bin=settings.llama_server_bin,
    )
    report = evaluate(options)
    print_report(report, Path(options.out_dir))
    if not report.passed:
        fail("evaluation FAILED a gate", FAILED)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
