"""`chakor train`, `chakor sft` and `chakor export` (added to the main CLI by `register`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from common.cli import USAGE, console, fail, settings_or_exit, user_errors
from trainer.recipe import TOKENS_PER_PARAM
from trainer.sft import run_sft
from trainer.train import TrainingError, default_tokenizer_dir, plan_training, run_training

# Bad input (a missing --data dir, an unknown --config, a run that exists already): exit 2; a training
# run that started and failed: exit 1.
training_errors = user_errors(FileNotFoundError, FileExistsError, ValueError, failed=(TrainingError,))


@training_errors
def train(
    data: Path | None = typer.Option(
        None, "--data", help="Shard directory (manifest.json + train/val .bin); needed to train."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder, e.g. runs/NAME; needed to train."),
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
    warmup_steps: int | None = typer.Option(None, "--warmup-steps", min=0, help="Linear LR warmup steps."),
    tokens_per_param: float = typer.Option(
        TOKENS_PER_PARAM, "--tokens-per-param", min=0.001, help="Training tokens per parameter (recipe dial)."
    ),
    plan: bool = typer.Option(False, "--plan", help="Print the recipe as JSON and exit without training."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Shard the model on the meta device over a fake process group; print the plan.",
    ),
) -> None:
    """Pretrain a model with torchtitan (torchrun on --nproc processes).

    The recipe (steps, batch, LR, warmup, seq_len) is derived per size from the parameter count at the
    tokenizer's vocabulary and --tokens-per-param (see `--plan`, which finds the tokenizer as a run does,
    from --tokenizer or --data, and otherwise plans for the registry's vocabulary); tiny keeps its
    quickstart recipe. Options override it.
    """
    recipe: dict[str, Any] = {
        "steps": steps, "lr": lr, "local_batch_size": batch_size, "seq_len": seq_len,
        "global_batch_size": global_batch_size, "tensor_parallel": tp, "data_parallel_replicate": dp_replicate,
        "eval_every": eval_every, "checkpoint_every": checkpoint_every, "warmup_steps": warmup_steps,
        "compile": compile or None, "activation_checkpointing": activation_checkpointing or None,
    }  # fmt: skip
    overrides = {k: v for k, v in recipe.items() if v is not None}
    if plan or dry_run:
        if tokenizer is None and data is not None:
            tokenizer = default_tokenizer_dir(data, settings_or_exit().tokenizer_path)
        _plan(config or "tiny", tokenizer, nproc, tokens_per_param, overrides, dry_run)
        return
    if data is None or out is None:
        fail("--data and --out are needed to train (or pass --plan / --dry-run)", USAGE)
    configured = settings_or_exit().tokenizer_path if tokenizer is None else None
    run_dir = run_training(
        out, data, model=config, tokenizer=tokenizer, nproc=nproc, resume=resume,
        tokens_per_param=tokens_per_param, configured_tokenizer=configured, **overrides,
    )  # fmt: skip
    console.print(f"[green]trained[/] {run_dir} (metrics.jsonl, loss.png, samples.jsonl)")


def _plan(
    config: str,
    tokenizer: Path | None,
    nproc: int,
    tokens_per_param: float,
    overrides: dict[str, Any],
    dry: bool,
) -> None:
    """Print the recipe a run would train with (and with `dry`, the sharded model's plan and memory per
    GPU) as JSON: for the vocabulary of `tokenizer`, or the registry's without one."""
    planned = plan_training(config, tokenizer, nproc, tokens_per_param, **overrides)
    report: dict[str, Any] = planned.to_dict()
    if dry:
        # lazy: the dry run imports torch and torchtitan; `--plan` and `chakor --help` stay fast
        from trainer.titan.dry_run import dry_run

        replicas = overrides.get("data_parallel_replicate", 1)
        report = {"plan": report, "dry_run": dry_run(planned.model, planned, replicas)}
    print(json.dumps(report, indent=2))


@training_errors
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
    recipe: dict[str, Any] = {
        k: v for k, v in {"epochs": epochs, "steps": steps, "lr": lr}.items() if v is not None
    }
    run_dir = run_sft(base, data, out, nproc=nproc, **recipe)
    packing = json.loads((run_dir / "run.json").read_text())["packing"]
    console.print(
        f"[green]fine-tuned[/] {run_dir} ({packing['rows']} packed rows, {packing['fill']:.1%} full; "
        f"{packing['dropped_too_long']} conversations longer than a row dropped)"
    )


@training_errors
def export(
    run: Path = typer.Argument(..., help="Run folder (runs/NAME)."),
    out: Path = typer.Option(..., "--out", help="Export directory to write."),
    format: str = typer.Option(
        "native", "--format", help="native, or hf to add a LlamaForCausalLM hf/ folder."
    ),
) -> None:
    """Consolidate a run's last checkpoint into safetensors + config.json + tokenizer + lineage.json."""
    if format not in ("native", "hf"):
        fail(f"--format must be native or hf, got {format!r}", USAGE)
    # lazy: trainer.export imports torch; `chakor --help` stays fast
    from trainer.export import export_run

    path = export_run(run, out, hf=format == "hf")
    console.print(f"[green]exported[/] {path}")


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the `chakor` app."""
    app.command("train")(train)
    app.command("sft")(sft)
    app.command("export")(export)
