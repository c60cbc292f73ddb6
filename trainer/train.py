"""Launch torchtitan training runs: prepare the run folder, start torchrun, follow progress.

Python API (what the CLI calls): `run_training(out, data, model="tiny", nproc=1, steps=..., resume=False)`
returns the run folder; `trainer.sft.run_sft` is its fine-tuning sibling.

A run folder holds `run.json` (model config + recipe + data), `tokenizer/`, `checkpoint/step-N/` (DCP),
`metrics.jsonl`, `loss.png`, `samples.jsonl` and `train.log` (torchrun's output).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from common.chat import load_tokenizer
from common.hashing import sha256_file
from trainer.configs import ModelConfig, TrainConfig, resolve_model
from trainer.launch import Nodes, check_visible_gpus, launch_env, launch_record, log_name, torchrun_command
from trainer.metrics import METRICS_FILE, read_metrics
from trainer.recipe import TOKENS_PER_PARAM, Plan, plan_recipe
from trainer.run_folder import (
    CHECKPOINT_SUBDIR,
    RUN_FILE,
    TOKENIZER_SUBDIR,
    checkpoint_steps,
    git_commit,
    read_run,
    write_run,
)
from trainer.slurm import SBATCH_FILE, SlurmJob, write_sbatch
from trainer.tokenizer.train import tokenizer_sha256


class TrainingError(RuntimeError):
    """torchrun exited with an error; the message carries the end of the log."""


def default_tokenizer_dir(data: Path, configured: Path | None = None) -> Path:
    """The tokenizer the shards were made with: `DATA/tokenizer`, `DATA/../tokenizer` or `configured`
    (the CLI passes CHAKOR_TOKENIZER_PATH).

    The first candidate whose tokenizer.json hash equals the manifest's `tokenizer_sha256` wins.
    """
    # lazy: trainer.titan imports torch and torchtitan; `chakor train --help` stays fast
    from trainer.titan.data import read_manifest

    wanted = read_manifest(data)["tokenizer_sha256"]
    candidates = [Path(data) / TOKENIZER_SUBDIR, Path(data).parent / TOKENIZER_SUBDIR]
    if configured is not None:
        candidates.append(Path(configured))
    for candidate in candidates:
        if (candidate / "tokenizer.json").is_file() and tokenizer_sha256(candidate) == wanted:
            return candidate
    raise FileNotFoundError(
        f"no tokenizer matching {Path(data) / 'manifest.json'} in {', '.join(str(c) for c in candidates)}; "
        "pass --tokenizer DIR"
    )


def _resolve_for(model: str | ModelConfig, tokenizer_dir: Path | None) -> tuple[str, ModelConfig]:
    """`trainer.configs.resolve_model` for the tokenizer in `tokenizer_dir` (the registry's vocabulary
    when None)."""
    if tokenizer_dir is None:
        return resolve_model(model)
    vocab = load_tokenizer(tokenizer_dir).get_vocab_size()
    return resolve_model(model, vocab, str(Path(tokenizer_dir) / "tokenizer.json"))


def plan_training(
    model: str | ModelConfig,
    tokenizer_dir: Path | None,
    nproc: int = 1,
    tokens_per_param: float = TOKENS_PER_PARAM,
    nnodes: int = 1,
    **recipe: Any,
) -> Plan:
    """The plan of a run: `model` sized for the vocabulary of the tokenizer in `tokenizer_dir` (the
    registry's vocabulary when None), then its recipe (`trainer.recipe.plan_recipe`; `recipe` overrides
    TrainConfig fields) on `nnodes` nodes of `nproc` processes. `chakor train --plan` prints this plan
    and `run_training` trains with it."""
    name, cfg = _resolve_for(model, tokenizer_dir)
    return plan_recipe(
        name, cfg, nproc, recipe.get("tensor_parallel", 1), tokens_per_param, nnodes=nnodes, **recipe
    )


def _run_tokenizer(
    out: Path, data: Path, tokenizer: Path | None, resume: bool, configured: Path | None
) -> Path:
    """The run's tokenizer: `tokenizer`, else the resumed run's own, else the shards' (default_tokenizer_dir);
    checked against the shards' manifest before anything is sized for its vocabulary."""
    # lazy: trainer.titan imports torch and torchtitan; `chakor train --help` stays fast
    from trainer.titan.data import check_tokenizer

    if tokenizer is None and resume and (out / RUN_FILE).is_file():
        tokenizer = out / TOKENIZER_SUBDIR
    if tokenizer is None:
        return default_tokenizer_dir(data, configured)
    check_tokenizer(data, tokenizer)
    return Path(tokenizer)


def _check_resume(out: Path, resume: bool, cfg: ModelConfig, data: Path) -> None:
    """Refuse to overwrite a run by accident, and to resume a run with another model config or other data.

    "Other data" is a different `manifest.json` (its SHA-256 is in run.json): the checkpointed loader
    position only means something over the same shards.
    """
    if not (out / RUN_FILE).is_file():
        if resume:
            raise FileNotFoundError(f"cannot resume: {out / RUN_FILE} does not exist")
        return
    if not resume:
        raise FileExistsError(
            f"{out} already holds a run: pass --resume to continue it, or choose another --out"
        )
    previous_run = read_run(out)
    previous = ModelConfig.from_dict(previous_run["model"], source=str(out / RUN_FILE))
    if previous != cfg:
        raise ValueError(
            f"{out / RUN_FILE}: the checkpoints there are from another model config "
            f"({previous}); cannot resume with {cfg}"
        )
    trained_on, offered = previous_run.get("data_manifest_sha256"), sha256_file(data / "manifest.json")
    if trained_on != offered:
        raise ValueError(
            f"{out / RUN_FILE}: the run was trained on other data (manifest sha256 {str(trained_on)[:12]}, "
            f"{previous_run.get('data')}); {data / 'manifest.json'} has sha256 {offered[:12]}. "
            "Resume with the run's own --data, or start a new run with another --out"
        )
    steps = checkpoint_steps(out)
    if steps:
        # lazy: trainer.export imports torch, needed only to check a checkpoint
        from trainer.export import check_checkpoint

        check_checkpoint(out / CHECKPOINT_SUBDIR / f"step-{steps[-1]}", cfg)


def record_run(
    out: Path,
    tokenizer_dir: Path,
    kind: str,
    name: str,
    cfg: ModelConfig,
    train: TrainConfig,
    data: Path,
    tokenizer_sha: str,
    **extra: Any,
) -> None:
    """Write a run folder: run.json (what every run records, pretraining or fine-tuning, then `extra`)
    and a copy of the tokenizer. `data` is the shard directory (its manifest is hashed) or a data file."""
    data_file = data / "manifest.json" if data.is_dir() else data
    run = {
        "kind": kind,
        "model_name": name,
        "model": cfg.to_dict(),
        "train": asdict(train),
        "data": str(data),
        "data_manifest_sha256": sha256_file(data_file),
        "tokenizer_sha256": tokenizer_sha,
        **extra,
        "git_commit": git_commit(),
    }
    write_run(out, run, tokenizer_dir)


def _write_pretrain_run(
    out: Path,
    data: Path,
    name: str,
    cfg: ModelConfig,
    tokenizer_dir: Path,
    recipe: TrainConfig,
    resume: bool,
    launched: dict[str, Any] | None = None,
) -> Path:
    """Check the data, the sequence length and the resume against the resolved model; write the folder
    (`launched`: trainer.launch.launch_record, the world size and the command)."""
    # lazy: trainer.titan imports torch and torchtitan; `chakor train --help` stays fast
    from trainer.titan.data import check_data_dir

    manifest = check_data_dir(data, tokenizer_dir, recipe.seq_len)
    if recipe.seq_len > cfg.max_seq_len:
        raise ValueError(f"seq_len {recipe.seq_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
    _check_resume(out, resume, cfg, data)
    record_run(
        out,
        tokenizer_dir,
        "pretrain",
        name,
        cfg,
        recipe,
        data,
        manifest["tokenizer_sha256"],
        **(launched or {}),
    )
    return out


def prepare_run(
    out: Path,
    data: Path,
    model: str | ModelConfig = "tiny",
    tokenizer: Path | None = None,
    recipe: TrainConfig | None = None,
    resume: bool = False,
    configured_tokenizer: Path | None = None,
) -> Path:
    """Check inputs and write the run folder (run.json + tokenizer) for `recipe`; returns it.

    `tokenizer` defaults to the resumed run's own, then to the shards' (`default_tokenizer_dir`, which
    also tries `configured_tokenizer`)."""
    out, data = Path(out).resolve(), Path(data).resolve()
    tokenizer_dir = _run_tokenizer(out, data, tokenizer, resume, configured_tokenizer)
    name, cfg = _resolve_for(model, tokenizer_dir)
    return _write_pretrain_run(out, data, name, cfg, tokenizer_dir, recipe or TrainConfig(), resume)


def _follow(proc: subprocess.Popen, run_dir: Path, steps: int, start: int, title: str) -> None:
    """Show a rich progress bar fed by metrics.jsonl until the process exits."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, TextColumn("{task.fields[status]}")) as progress:
        task = progress.add_task(title, total=steps, completed=start, status="starting")
        while proc.poll() is None:
            time.sleep(0.5)
            records = [r for r in read_metrics(run_dir / METRICS_FILE) if "loss" in r]
            if records:
                last = records[-1]
                status = f"loss {last['loss']:.3f}  {last.get('tokens_per_s', 0):,.0f} tok/s"
                progress.update(task, completed=last["step"], status=status)


def _visible_gpus() -> int | None:
    """CUDA's device count on this node, None without CUDA."""
    # lazy: torch is imported only to launch; `chakor train --help` stays fast
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else None


def torchrun_for(
    run_dir: Path,
    config: str,
    nproc: int,
    nodes: Nodes,
    extra_args: tuple[str, ...] = (),
    module: str = "trainer.titan",
) -> list[str]:
    """The torchrun command this node runs for run folder `run_dir` (the rendezvous id is its name)."""
    return torchrun_command(nproc, nodes, Path(run_dir).name, config, module, extra_args)


def launch(
    run_dir: Path,
    config: str,
    nproc: int,
    extra_args: tuple[str, ...] = (),
    quiet: bool = False,
    module: str = "trainer.titan",
    nodes: Nodes | None = None,
) -> None:
    """Run torchrun (trainer.launch: standalone, or this node's share of a multi-node job) on
    trainer.titan.run with the run folder's recipe; raise on failure.

    `config` names a function of torchtitan config registry `module` (trainer.titan.config_registry).
    Node 0 follows metrics.jsonl with a progress bar; the other nodes wait for their processes.
    """
    run_dir, nodes = Path(run_dir), nodes or Nodes()
    visible = _visible_gpus()
    check_visible_gpus(nproc, nodes, visible)
    cmd = torchrun_for(run_dir, config, nproc, nodes, extra_args, module)
    log_path = run_dir / log_name(nodes)
    run_dir.mkdir(parents=True, exist_ok=True)  # a node > 0 may start before node 0 wrote the folder
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=launch_env(run_dir, nproc, cpu_only=not visible)
        )
        try:
            if quiet or nodes.node_rank > 0:
                proc.wait()
            else:
                start = (checkpoint_steps(run_dir) or [0])[-1]
                steps = read_run(run_dir)["train"]["steps"]
                _follow(proc, run_dir, steps, start, f"{config} {run_dir.name}")
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    if proc.returncode != 0:
        tail = log_path.read_text().splitlines()[-40:]
        errors = [line for line in tail if "Error" in line]
        reason = errors[-1] if errors else "see the log"
        raise TrainingError(f"training failed ({reason}); log: {log_path}\n" + "\n".join(tail[-15:]))


def run_training(
    out: Path,
    data: Path,
    model: str | ModelConfig | None = None,
    tokenizer: Path | None = None,
    nproc: int = 1,
    resume: bool = False,
    quiet: bool = False,
    tokens_per_param: float = TOKENS_PER_PARAM,
    configured_tokenizer: Path | None = None,
    nodes: Nodes | None = None,
    **recipe: Any,
) -> Path:
    """Pretrain and return the run folder. `model`: a MODEL_CONFIGS name or a ModelConfig (default tiny);
    the recipe is `plan_training`'s for it at the tokenizer's vocabulary (derived per size; tiny and
    custom configs keep the budget recipe) and `recipe` overrides TrainConfig fields (steps, lr, ...).
    `tokenizer` defaults as in `prepare_run`. `nproc` processes per node; `nodes` places this launcher
    in a multi-node job (trainer.launch): node 0 plans and writes the run folder, every other node only
    starts its processes, which read node 0's run.json once the rendezvous completes.

    With `resume`, the run's own recipe, model config and tokenizer are the defaults.
    """
    nodes = nodes or Nodes()
    out, data = Path(out).resolve(), Path(data).resolve()
    if nodes.node_rank > 0:
        launch(out, "pretrain", nproc, quiet=quiet, nodes=nodes)
        return out
    command = torchrun_for(out, "pretrain", nproc, nodes)
    run_dir = _prepare_training(
        out, data, model, tokenizer, resume, tokens_per_param, configured_tokenizer,
        launch_record(nproc, nodes.nnodes, shlex.join(command)), recipe,
    )  # fmt: skip
    launch(run_dir, "pretrain", nproc, quiet=quiet, nodes=nodes)
    return run_dir


def _prepare_training(
    out: Path,
    data: Path,
    model: str | ModelConfig | None,
    tokenizer: Path | None,
    resume: bool,
    tokens_per_param: float,
    configured_tokenizer: Path | None,
    launched: dict[str, Any],
    recipe: dict[str, Any],
) -> Path:
    """Plan the run (or take the resumed run's recipe) for the world `launched` describes, check it and
    write the run folder; returns it."""
    tokenizer_dir = _run_tokenizer(out, data, tokenizer, resume, configured_tokenizer)
    previous = read_run(out) if resume and (out / RUN_FILE).is_file() else None
    if previous is not None:
        if model is None:
            model = ModelConfig.from_dict(previous["model"], source=str(out / RUN_FILE))
        name, cfg = _resolve_for(model, tokenizer_dir)
        if name == "custom":  # the run's own config: keep the name it was started with
            name = previous.get("model_name", name)
        train = TrainConfig(**{**previous["train"], **recipe})
    else:
        nproc, nnodes = launched["nproc_per_node"], launched["nnodes"]
        plan = plan_training(model or "tiny", tokenizer_dir, nproc, tokens_per_param, nnodes=nnodes, **recipe)
        name, cfg, train = plan.config, plan.model, plan.train
    return _write_pretrain_run(out, data, name, cfg, tokenizer_dir, train, resume, launched)


def prepare_slurm_training(
    out: Path,
    data: Path,
    job: SlurmJob,
    model: str | ModelConfig | None = None,
    tokenizer: Path | None = None,
    resume: bool = False,
    tokens_per_param: float = TOKENS_PER_PARAM,
    configured_tokenizer: Path | None = None,
    **recipe: Any,
) -> Path:
    """Plan and write the run folder for `job.nnodes` nodes of `job.gpus_per_node` GPUs, and its Slurm
    script `RUN/train.sbatch` (trainer.slurm); returns the script's path. Nothing is started."""
    out, data = Path(out).resolve(), Path(data).resolve()
    launched = launch_record(job.gpus_per_node, job.nnodes, f"sbatch {out / SBATCH_FILE}")
    run_dir = _prepare_training(
        out, data, model, tokenizer, resume, tokens_per_param, configured_tokenizer, launched, recipe
    )
    return write_sbatch(run_dir, job)
