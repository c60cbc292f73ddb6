"""`chakor train`, `chakor sft` and `chakor export` (added to the main CLI by `register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console()

_USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError)


def _error(exc: Exception) -> None:
    console.print(str(exc), style="red", markup=False, soft_wrap=True)


def train(
    data: Path = typer.Option(..., "--data", help="Shard directory (manifest.json + train/val .bin)."),
    out: Path = typer.Option(..., "--out", help="Run folder, e.g. runs/NAME."),
    config: str | None = typer.Option(None, "--config", help="tiny (default), small, 1b or 7b."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Tokenizer directory of the shards."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes (GPUs, or CPU processes with gloo)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Total optimizer steps."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its last checkpoint."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Sequences per process per step."
    ),
    global_batch_size: int | None = typer.Option(
        None, "--global-batch-size", min=1, help="Sequences per optimizer step (gradient accumulation)."
    ),
    tp: int | None = typer.Option(None, "--tp", min=1, help="Tensor-parallel degree (untied models)."),
    dp_replicate: int | None = typer.Option(None, "--dp-replicate", min=1, help="HSDP/DDP replicas."),
    seq_len: int | None = typer.Option(None, "--seq-len", min=8, help="Tokens per sequence."),
    eval_every: int | None = typer.Option(
        None, "--eval-every", min=1, help="Validate + sample every N steps."
    ),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", min=1, help="Checkpoint interval."
    ),
    compile: bool = typer.Option(False, "--compile", help="torch.compile each block."),
    activation_checkpointing: bool = typer.Option(False, "--ac", help="Full activation checkpointing."),
) -> None:
    """Pretrain a model with torchtitan (torchrun on --nproc processes)."""
    from trainer.train import TrainingError, run_training

    recipe: dict[str, Any] = {
        "steps": steps, "lr": lr, "local_batch_size": batch_size, "seq_len": seq_len,
        "global_batch_size": global_batch_size, "tensor_parallel": tp, "data_parallel_replicate": dp_replicate,
        "eval_every": eval_every, "checkpoint_every": checkpoint_every,
        "compile": compile or None, "activation_checkpointing": activation_checkpointing or None,
    }  # fmt: skip
    try:
        run_dir = run_training(
            out, data, model=config, tokenizer=tokenizer, nproc=nproc, resume=resume,
            **{k: v for k, v in recipe.items() if v is not None},
        )  # fmt: skip
    except (*_USER_ERRORS, TrainingError) as exc:
        _error(exc)
        raise typer.Exit(1) from None
    console.print(f"[green]trained[/] {run_dir} (metrics.jsonl, loss.png, samples.jsonl)")


def sft(
    base: Path = typer.Option(..., "--base", help="Pretraining run folder to start from."),
    data: Path = typer.Option(..., "--data", help="Conversations, one JSON object per line."),
    out: Path = typer.Option(..., "--out", help="New run folder, e.g. runs/NAME-sft."),
    nproc: int = typer.Option(1, "--nproc", min=1),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Passes over the data (default 3)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Optimizer steps (overrides --epochs)."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default 3e-4)."),
) -> None:
    """Supervised fine-tuning on multi-turn chats: loss on assistant tokens only."""
    from trainer.sft import run_sft
    from trainer.train import TrainingError

    recipe: dict[str, Any] = {
        k: v for k, v in {"epochs": epochs, "steps": steps, "lr": lr}.items() if v is not None
    }
    try:
        run_dir = run_sft(base, data, out, nproc=nproc, **recipe)
    except (*_USER_ERRORS, TrainingError) as exc:
        _error(exc)
        raise typer.Exit(1) from None
    console.print(f"[green]fine-tuned[/] {run_dir}")


def export(
    run: Path = typer.Argument(..., help="Run folder (runs/NAME)."),
    out: Path = typer.Option(..., "--out", help="Export directory to write."),
    format: str = typer.Option(
        "native", "--format", help="native, or hf to add a LlamaForCausalLM hf/ folder."
    ),
) -> None:
    """Consolidate a run's last checkpoint into safetensors + config.json + tokenizer + lineage.json."""
    if format not in ("native", "hf"):
        console.print(f"[red]--format must be native or hf, got {format!r}[/]")
        raise typer.Exit(2)
    from trainer.export import export_run

    try:
        path = export_run(run, out, hf=format == "hf")
    except _USER_ERRORS as exc:
        _error(exc)
        raise typer.Exit(1) from None
    console.print(f"[green]exported[/] {path}")


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the `chakor` app."""
    app.command("train")(train)
    app.command("sft")(sft)
    app.command("export")(export)
