"""`chakor data ...` and `chakor tokenizer ...` commands; `register(app)` adds both groups."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from common.cli import console, user_errors
from trainer.tokenizer.train import train_tokenizer

if TYPE_CHECKING:
    from trainer.data.executor import ExecutorConfig

data_app = typer.Typer(
    help="Prepare text data: clean, filter, dedup, tokenize, SFT conversations.", no_args_is_help=True
)
tokenizer_app = typer.Typer(help="Train the byte-level BPE tokenizer.", no_args_is_help=True)
# Bad input (a bad option, a missing source, an `--out` that is not ours) exits 2; a stage whose tasks
# did not complete (StageError, a RuntimeError) is work that failed and exits 1.
clear_errors = user_errors(ValueError, FileNotFoundError, FileExistsError, failed=(RuntimeError,))


def register(app: typer.Typer) -> None:
    """Add the `data` and `tokenizer` command groups to the main `chakor` app."""
    app.add_typer(data_app, name="data")
    app.add_typer(tokenizer_app, name="tokenizer")


def parse_weights(items: list[str]) -> dict[str, float]:
    """`SPEC=W` strings -> {spec: weight}."""
    weights = {}
    for item in items:
        spec, sep, value = item.rpartition("=")
        try:
            weights[spec] = float(value)
        except ValueError:
            sep = ""
        if not sep or not spec:
            raise ValueError(f"--weight {item!r}: expected SOURCE=NUMBER, e.g. local:python-code=2")
    return weights


def parse_limits(items: list[str]) -> dict[str, int]:
    """`SPEC=N` strings -> {spec: N} (documents at most)."""
    limits = {}
    for item in items:
        spec, sep, value = item.rpartition("=")
        if not sep or not spec or not value.isdigit():
            raise ValueError(
                f"--limit {item!r}: expected SOURCE=N documents, e.g. data/*.parquet:text=100000"
            )
        limits[spec] = int(value)
    return limits


def print_prepare_report(report: dict[str, Any]) -> None:
    sources = Table(title="sources")
    sources.add_column("source", no_wrap=True)
    for column in ("weight", "docs", "MB", "bad bytes", "kept docs", "kept MB"):
        sources.add_column(column, justify="right")
    for spec, info in report["sources"].items():
        sources.add_row(
            spec,
            f"{info['weight']:g}",
            str(info["read_docs"]),
            f"{info['read_bytes'] / 1e6:.2f}",
            str(info["undecodable_bytes"]),
            str(info["kept_docs"]),
            f"{info['kept_bytes'] / 1e6:.2f}",
        )
    removed = Table(title="removed documents")
    for column in ("step", "reason", "count"):
        removed.add_column(column, justify="right" if column == "count" else "left")
    for step, reasons in report["removed"].items():
        for reason, count in reasons.items():
            removed.add_row(step, reason, str(count))
    console.print(sources, removed)
    for spec, info in report["sources"].items():
        for path, lines in info["malformed_lines"].items():
            console.print(f"[yellow]{spec}: malformed lines in {path}: {', '.join(map(str, lines))}[/yellow]")
    console.print(f"kept {report['documents']} documents, {report['bytes'] / 1e6:.2f} MB")


def executor_config(**options: Any) -> ExecutorConfig:
    """The executor options (EXECUTOR_OPTIONS) as an ExecutorConfig, checked."""
    from trainer.data.executor import ExecutorConfig  # lazy: pulls in datatrove; `chakor --help` stays fast

    config = ExecutorConfig(kind=options.pop("executor"), **options)
    config.check()
    return config


# Where and how wide a datatrove-running command's stages run: parameter name -> (type, typer option).
EXECUTOR_OPTIONS: dict[str, tuple[Any, Any]] = {
    "executor": (
        str,
        typer.Option(
            "local",
            "--executor",
            help="local (processes on this machine), ray (RAY_ADDRESS or a local cluster), slurm (sbatch).",
        ),
    ),
    "workers": (int, typer.Option(1, "--workers", min=1, help="Tasks running at once.")),
    "partition": (
        str | None,
        typer.Option(None, "--partition", help="Slurm partition (required with --executor slurm)."),
    ),
    "time": (str, typer.Option("04:00:00", "--time", help="Slurm time limit per task.")),
    "cpus_per_task": (
        int,
        typer.Option(1, "--cpus-per-task", min=1, help="CPUs a Ray actor / Slurm task reserves."),
    ),
    "mem_per_cpu_gb": (
        float,
        typer.Option(2.0, "--mem-per-cpu-gb", help="GB of memory per CPU a Ray actor / Slurm task reserves."),
    ),
    "venv": (
        str | None,
        typer.Option(
            None, "--venv", help="Slurm: virtualenv activate script sourced by each job (default: none)."
        ),
    ),
}


def executor_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` the EXECUTOR_OPTIONS (after its own options); it gets them as one checked
    ExecutorConfig, its `executor` parameter."""
    signature = inspect.signature(command)
    own = [parameter for name, parameter in signature.parameters.items() if name != "executor"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
        for name, (kind, option) in EXECUTOR_OPTIONS.items()
    ]

    @wraps(command)
    def wrapper(**kwargs: Any) -> None:
        options = {name: kwargs.pop(name) for name in EXECUTOR_OPTIONS}
        command(executor=executor_config(**options), **kwargs)

    # typer reads the options from the signature and resolves the (string) annotations of `command`
    # but `executor`, an ExecutorConfig, which is imported only for type checking.
    wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        name: kind for name, kind in command.__annotations__.items() if name != "executor"
    }
    return wrapper


def print_submitted(jobs: list[str], work: Path, out: Path) -> None:
    console.print(
        f"submitted Slurm jobs {', '.join(jobs)}; work folder {work}; output {out} when the last ends"
    )


@data_app.command("prepare")
@clear_errors
@executor_options
def prepare_command(
    source: list[str] = typer.Option(
        ...,
        "--source",
        help="local:python-docs, local:python-code, DIR, FILE.txt, PATH.jsonl[.gz|.zst][:field], "
        "PATH_OR_GLOB.parquet[:field], hf:NAME?config=&split=&field=&revision=&limit=; PATH may be an "
        "fsspec URL (s3://, hf://).",
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (docs-*.jsonl + report.json)."),
    weight: list[str] = typer.Option(
        [], "--weight", help="Mixing weight SOURCE=W (up-sampling at tokenize)."
    ),
    tasks: int | None = typer.Option(
        None, "--tasks", min=1, help="Tasks sharing the filter/dedup stages (default: --workers)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed recorded for split and shuffling."),
    max_docs: int | None = typer.Option(
        None, "--max-docs", "--max-documents", min=1, help="At most N documents per source."
    ),
    limit: list[str] = typer.Option(
        [], "--limit", help="At most N documents of one source: SOURCE=N (repeatable)."
    ),
    max_bytes: int | None = typer.Option(
        None, "--max-bytes", min=1, help="At most N bytes per source (built-ins default to 2 MB)."
    ),
    perplexity_model: Path | None = typer.Option(
        None, "--perplexity-model", help="Export folder of a reference model: drop high-perplexity documents."
    ),
    max_perplexity: float | None = typer.Option(
        None,
        "--max-perplexity",
        help="Perplexity above which a document is removed (needs --perplexity-model).",
    ),
    drop_worst: float | None = typer.Option(
        None, "--drop-worst", help="Instead of --max-perplexity: remove the worst PCT percent of documents."
    ),
    *,
    executor: ExecutorConfig,
) -> None:
    """Read, clean, filter and deduplicate documents; print and write the removal report."""
    # lazy: both pull in datatrove and numpy; `chakor --help` stays fast
    from trainer.data.filters import FilterConfig
    from trainer.data.prepare import PrepareConfig, prepare, submit_prepare  # lazy: the same

    if (perplexity_model is None) != (max_perplexity is None and drop_worst is None) or (
        max_perplexity is not None and drop_worst is not None
    ):
        raise ValueError("--perplexity-model goes with one of --max-perplexity or --drop-worst")
    filters = FilterConfig(
        perplexity_model=perplexity_model,
        max_perplexity=max_perplexity or float("inf"),
        drop_worst=drop_worst,
    )
    config = PrepareConfig(
        sources=source,
        out_dir=out,
        weights=parse_weights(weight),
        workers=executor.workers,
        tasks=tasks,
        seed=seed,
        max_docs=max_docs,
        max_bytes=max_bytes,
        limits=parse_limits(limit),
        filters=filters,
        executor=executor,
    )
    if config.executor.kind == "slurm":
        print_submitted(*submit_prepare(config), out)
        return
    with console.status("prepare") as status:
        report = prepare(config, on_stage=lambda name: status.update(f"prepare: {name}"))
    print_prepare_report(report)
    console.print(f"wrote {out}")


@data_app.command("tokenize")
@clear_errors
@executor_options
def tokenize_command(
    data: Path = typer.Option(..., "--data", help="A `chakor data prepare` output."),
    tokenizer: Path = typer.Option(..., "--tokenizer", help="A tokenizer directory."),
    out: Path = typer.Option(..., "--out", help="Output folder (shards + manifest.json)."),
    shard_tokens: int = typer.Option(1_000_000, "--shard-tokens", min=1, help="Tokens per shard (approx.)."),
    val_fraction: float = typer.Option(
        0.05, "--val-fraction", min=0.0, max=0.99, help="Share of docs in val."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Defaults to the seed given to prepare."),
    *,
    executor: ExecutorConfig,
) -> None:
    """Tokenize prepared documents into uint16/uint32 shards and write manifest.json."""
    from trainer.data.shards import TokenizeConfig, submit_tokenize, tokenize  # lazy: pulls in datatrove

    config = TokenizeConfig(
        data,
        tokenizer,
        out,
        shard_tokens,
        val_fraction,
        seed,
        workers=executor.workers,
        executor=executor,
    )
    if config.executor.kind == "slurm":
        print_submitted(*submit_tokenize(config), out)
        return
    with console.status("tokenize") as status:
        result = tokenize(config, on_stage=lambda name: status.update(f"tokenize: {name}"))
    for split, info in result.manifest["splits"].items():
        console.print(f"{split}: {info['tokens']:,} tokens in {len(info['shards'])} shards")
    console.print(
        f"wrote {result.written_shards} shards, kept {result.skipped_shards} from an earlier run: {out}"
    )


@data_app.command("count-tokens")
@clear_errors
def count_tokens_command(data: Path = typer.Argument(..., help="A `chakor data tokenize` output.")) -> None:
    """Print the number of tokens per split (counted from the shard files)."""
    from trainer.data.shards import count_tokens  # lazy: pulls in datatrove and numpy

    counts = count_tokens(data)
    for split, tokens in counts.items():
        console.print(f"{split}\t{tokens}")
    console.print(f"total\t{sum(counts.values())}")


@data_app.command("sft")
@clear_errors
def sft_command(
    source: str = typer.Option(
        ...,
        "--source",
        help="local:python-qa, local:python-grounded, or a .jsonl[.gz|.zst] / .parquet file or hf:NAME "
        "with a messages column, ShareGPT conversations, or ?prompt=COL&response=COL.",
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (sft.jsonl + report.json)."),
    seed: int = typer.Option(0, "--seed"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N conversations."),
) -> None:
    """Write validated multi-turn chat conversations for supervised fine-tuning."""
    from trainer.data.sft import build_sft  # lazy: its readers pull in datatrove; `chakor --help` stays fast

    report = build_sft(source, out, seed=seed, limit=limit)
    console.print(
        f"wrote {report['conversations']} conversations ({report['messages']} messages), "
        f"skipped {report['skipped']}: {out}"
    )
    for reason, lines in report["skipped_lines"].items():
        count = report["skipped_reasons"][reason]
        console.print(f"[yellow]skipped {count} ({reason}), rows: {', '.join(map(str, lines))}[/yellow]")


@tokenizer_app.command("train")
@clear_errors
def tokenizer_train_command(
    data: Path = typer.Option(..., "--data", help="A `chakor data prepare` output."),
    vocab_size: int = typer.Option(4096, "--vocab-size", help="Vocabulary size (>= 263)."),
    out: Path = typer.Option(..., "--out", help="Tokenizer directory to write."),
) -> None:
    """Train the byte-level BPE tokenizer on prepared documents."""
    from trainer.data.prepare import iter_documents  # lazy: pulls in datatrove and numpy

    train_tokenizer((doc["text"] for doc in iter_documents(data)), vocab_size, out)
    console.print(f"wrote {out / 'tokenizer.json'}")
