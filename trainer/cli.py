"""`chakor train`, `chakor sft` and `chakor export` (added to the main CLI by `register`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from common.cli import USAGE, console, fail, settings_or_exit, user_errors
from trainer.launch import Nodes
from trainer.recipe import TOKENS_PER_PARAM, plan_sft
from trainer.sft import plan_base_sft, run_sft
from trainer.slurm import SlurmJob, SubmitError
from trainer.slurm import submit as slurm_submit
from trainer.train import (
    TrainingError,
    default_tokenizer_dir,
    plan_training,
    prepare_slurm_training,
    run_training,
)

NNODES = typer.Option(1, "--nnodes", min=1, help="Nodes of the job (world size = nnodes x --nproc).")
NODE_RANK = typer.Option(
    0, "--node-rank", min=0, help="This node's rank, 0 .. nnodes-1 (0 writes the run folder)."
)
RDZV_ENDPOINT = typer.Option(
    None,
    "--rdzv-endpoint",
    help="HOST:PORT on node 0 for torchrun's c10d rendezvous (needed with --nnodes > 1).",
)
TP = typer.Option(None, "--tp", min=1, help="Tensor-parallel degree inside a node (untied models).")
DP_REPLICATE = typer.Option(
    None, "--dp-replicate", min=1, help="HSDP/DDP replicas (default: one per node when --nnodes > 1)."
)
COMPILE = typer.Option(False, "--compile", help="torch.compile each block.")
AC = typer.Option(False, "--ac", help="Activation checkpointing (full unless --ac-mode selective).")
AC_MODE = typer.Option(None, "--ac-mode", help="full or selective (torchtitan's per-op SAC); implies --ac.")
BATCH_SIZE = typer.Option(None, "--batch-size", min=1, help="Sequences per process per micro-batch.")
SEQ_LEN = typer.Option(None, "--seq-len", min=8, help="Tokens per sequence.")
EVAL_EVERY = typer.Option(None, "--eval-every", min=1, help="Validate + sample every N steps.")


def _parallel(
    tp: int | None, dp_replicate: int | None, compile: bool, ac: bool, ac_mode: str | None
) -> dict[str, Any]:
    """The parallel-layout recipe fields the flags set (None: not given)."""
    if ac_mode is not None and ac_mode not in ("full", "selective"):
        fail(f"--ac-mode must be full or selective, got {ac_mode!r}", USAGE)
    return {
        "tensor_parallel": tp, "data_parallel_replicate": dp_replicate, "compile": compile or None,
        "activation_checkpointing": (ac or ac_mode is not None) or None, "activation_checkpointing_mode": ac_mode or ("full" if ac else None),
    }  # fmt: skip


# Bad input (a missing --data dir, an unknown --config, a run that exists already): exit 2; a training
# run that started and failed: exit 1.
training_errors = user_errors(
    FileNotFoundError, FileExistsError, ValueError, failed=(TrainingError, SubmitError)
)


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
    batch_size: int | None = BATCH_SIZE,
    global_batch_size: int | None = typer.Option(
        None, "--global-batch-size", min=1, help="Sequences per optimizer step (gradient accumulation)."
    ),
    tp: int | None = TP,
    dp_replicate: int | None = DP_REPLICATE,
    seq_len: int | None = SEQ_LEN,
    eval_every: int | None = EVAL_EVERY,
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", min=1, help="Checkpoint interval."
    ),
    sample_tokens: int | None = typer.Option(
        None, "--sample-tokens", min=0, help="Tokens sampled per prompt at each validation (0: none)."
    ),
    compile: bool = COMPILE,
    activation_checkpointing: bool = AC,
    ac_mode: str | None = AC_MODE,
    nnodes: int = NNODES,
    node_rank: int = NODE_RANK,
    rdzv_endpoint: str | None = RDZV_ENDPOINT,
    warmup_steps: int | None = typer.Option(None, "--warmup-steps", min=0, help="Linear LR warmup steps."),
    tokens_per_param: float = typer.Option(
        TOKENS_PER_PARAM, "--tokens-per-param", min=0.001, help="Training tokens per parameter (recipe dial)."
    ),
    slurm: bool = typer.Option(
        False, "--slurm", help="Write the run folder and RUN/train.sbatch for --nnodes nodes; start nothing."
    ),
    partition: str | None = typer.Option(None, "--partition", help="Slurm partition (with --slurm)."),
    time_limit: str | None = typer.Option(
        None, "--time", help="Slurm time limit, e.g. 48:00:00 (with --slurm)."
    ),
    gpus_per_node: int | None = typer.Option(
        None, "--gpus-per-node", min=1, help="GPUs per node (with --slurm; default --nproc)."
    ),
    account: str | None = typer.Option(None, "--account", help="Slurm account (with --slurm)."),
    submit: bool = typer.Option(False, "--submit", help="With --slurm: submit the script with sbatch."),
    plan: bool = typer.Option(False, "--plan", help="Print the recipe as JSON and exit without training."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Shard the model on the meta device over a fake process group; print the plan.",
    ),
) -> None:
    """Pretrain a model with torchtitan (torchrun on --nproc processes per node, on --nnodes nodes).

    The recipe (steps, batch, LR, warmup, seq_len) is derived per size from the parameter count at the
    tokenizer's vocabulary and --tokens-per-param (see `--plan`, which finds the tokenizer as a run does,
    from --tokenizer or --data, and otherwise plans for the registry's vocabulary); tiny keeps its
    quickstart recipe. Options override it.
    """
    recipe: dict[str, Any] = {
        "steps": steps, "lr": lr, "local_batch_size": batch_size, "seq_len": seq_len,
        "global_batch_size": global_batch_size, "eval_every": eval_every, "checkpoint_every": checkpoint_every,
        "sample_tokens": sample_tokens,
        "warmup_steps": warmup_steps, **_parallel(tp, dp_replicate, compile, activation_checkpointing, ac_mode),
    }  # fmt: skip
    overrides = {k: v for k, v in recipe.items() if v is not None}
    if plan or dry_run:
        if tokenizer is None and data is not None:
            tokenizer = default_tokenizer_dir(data, settings_or_exit().tokenizer_path)
        _plan(config or "tiny", tokenizer, nproc, nnodes, tokens_per_param, overrides, dry_run)
        return
    if data is None or out is None:
        fail("--data and --out are needed to train (or pass --plan / --dry-run)", USAGE)
    configured = settings_or_exit().tokenizer_path if tokenizer is None else None
    if slurm:
        if gpus_per_node is not None and nproc not in (1, gpus_per_node):
            fail(
                f"--nproc {nproc} and --gpus-per-node {gpus_per_node} differ: a Slurm task runs one process per GPU",
                USAGE,
            )
        job = SlurmJob(nnodes, gpus_per_node or nproc, partition, time_limit, account)
        script = prepare_slurm_training(
            out, data, job, model=config, tokenizer=tokenizer, resume=resume,
            tokens_per_param=tokens_per_param, configured_tokenizer=configured, **overrides,
        )  # fmt: skip
        if submit:
            console.print(slurm_submit(script), highlight=False)
        else:
            console.print(f"[green]wrote[/] {script}; submit it with: sbatch {script}", highlight=False)
        return
    if submit:
        fail("--submit needs --slurm", USAGE)
    nodes = Nodes(nnodes, node_rank, rdzv_endpoint)
    run_dir = run_training(
        out, data, model=config, tokenizer=tokenizer, nproc=nproc, resume=resume,
        tokens_per_param=tokens_per_param, configured_tokenizer=configured, nodes=nodes, **overrides,
    )  # fmt: skip
    console.print(f"[green]trained[/] {run_dir} (metrics.jsonl, loss.png, samples.jsonl)")


def _plan(
    config: str,
    tokenizer: Path | None,
    nproc: int,
    nnodes: int,
    tokens_per_param: float,
    overrides: dict[str, Any],
    dry: bool,
) -> None:
    """Print the recipe a run would train with (and with `dry`, the sharded model's plan and memory per
    GPU) as JSON: for the vocabulary of `tokenizer`, or the registry's without one."""
    planned = plan_training(config, tokenizer, nproc, tokens_per_param, nnodes=nnodes, **overrides)
    report: dict[str, Any] = planned.to_dict()
    if dry:
        # lazy: the dry run imports torch and torchtitan; `--plan` and `chakor --help` stay fast
        from trainer.titan.dry_run import dry_run

        report = {"plan": report, "dry_run": dry_run(planned.model, planned, planned.data_parallel_replicate)}
    print(json.dumps(report, indent=2))


@training_errors
def sft(
    base: Path | None = typer.Option(None, "--base", help="Pretraining run folder to start from."),
    data: Path | None = typer.Option(None, "--data", help="Conversations, one JSON object per line."),
    out: Path | None = typer.Option(None, "--out", help="New run folder, e.g. runs/NAME-sft."),
    config: str | None = typer.Option(
        None, "--config", help="With --plan and no --base: plan the SFT of this size's pretraining plan."
    ),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes per node."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Passes over the data (default 3)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Optimizer steps (overrides --epochs)."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default: from the base run's)."),
    batch_size: int | None = BATCH_SIZE,
    seq_len: int | None = SEQ_LEN,
    eval_every: int | None = EVAL_EVERY,
    tp: int | None = TP,
    dp_replicate: int | None = DP_REPLICATE,
    compile: bool = COMPILE,
    activation_checkpointing: bool = AC,
    ac_mode: str | None = AC_MODE,
    nnodes: int = NNODES,
    node_rank: int = NODE_RANK,
    rdzv_endpoint: str | None = RDZV_ENDPOINT,
    plan: bool = typer.Option(False, "--plan", help="Print the fine-tuning plan as JSON and exit."),
) -> None:
    """Supervised fine-tuning on multi-turn chats: loss on assistant tokens only.

    The base run's layout (--tp, --dp-replicate, --compile, --ac) and sequence length are the defaults,
    the micro-batch is re-planned to fit, and the LR is a tenth of the base run's peak (capped at
    published SFT rates); `--plan` prints the plan and the rule behind each number.
    """
    recipe: dict[str, Any] = {
        "epochs": epochs, "steps": steps, "lr": lr, "local_batch_size": batch_size, "seq_len": seq_len,
        "eval_every": eval_every, **_parallel(tp, dp_replicate, compile, activation_checkpointing, ac_mode),
    }  # fmt: skip
    overrides = {k: v for k, v in recipe.items() if v is not None}
    if plan:
        if base is not None:
            planned = plan_base_sft(base, nproc, nnodes, data, **overrides)
        else:
            pretrain = plan_training(config or "tiny", None, nproc, nnodes=nnodes, **_layout_only(overrides))
            planned = plan_sft(
                pretrain.config, pretrain.model, pretrain.train, nproc, nnodes, None, **overrides
            )
        print(json.dumps(planned.to_dict(), indent=2))
        return
    if base is None or data is None or out is None:
        fail("--base, --data and --out are needed to fine-tune (or pass --plan)", USAGE)
    nodes = Nodes(nnodes, node_rank, rdzv_endpoint)
    run_dir = run_sft(base, data, out, nproc=nproc, nodes=nodes, **overrides)
    if nodes.node_rank > 0:
        console.print(f"[green]node {nodes.node_rank} done[/] {run_dir}")
        return
    run = json.loads((run_dir / "run.json").read_text())
    packing = run["packing"]
    console.print(
        f"[green]fine-tuned[/] {run_dir} at lr {run['train']['lr']:.2e} ({run['lr_rule']}; {packing['rows']} "
        f"packed rows, {packing['fill']:.1%} full; {packing['dropped_too_long']} conversations longer than a row "
        "dropped)"
    )


def _layout_only(overrides: dict[str, Any]) -> dict[str, Any]:
    """The parallel-layout fields of SFT overrides, for planning the pretraining run it would start from."""
    keys = ("tensor_parallel", "data_parallel_replicate", "compile", "activation_checkpointing", "seq_len")
    return {k: v for k, v in overrides.items() if k in keys}


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
