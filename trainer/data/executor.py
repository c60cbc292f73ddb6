"""Run a list of datatrove stages on one of datatrove's executors: local processes, a Ray cluster or Slurm.

Every stage is a datatrove pipeline with its own `logging_dir` (`WORK/logs/NAME/`), where datatrove keeps
per-task logs, per-task stats and completion markers (`completions/00003`). Executors skip completed
tasks, so re-running after a crash redoes only the tasks that had not finished.

- local: stages run one after the other; a stage's tasks run in `workers` processes (`workers == 1`
  runs them in this process: no process pool or manager to start, which keeps small runs fast).
- ray:   the same stages as Ray actors (`RayPipelineExecutor`); `ray.init()` joins the cluster named by
  `RAY_ADDRESS` or starts a local one. datatrove's Ray executor logs failures instead of raising, so
  every stage is checked for incomplete tasks before the next starts.
- slurm: every stage becomes a Slurm job array (`SlurmPipelineExecutor`), each depending on the one
  before (`--dependency=afterok`); this process only submits them (`sbatch`) and returns.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from datatrove.executor import LocalPipelineExecutor, RayPipelineExecutor, SlurmPipelineExecutor
from datatrove.executor.base import PipelineExecutor
from datatrove.utils.logging import logger

ExecutorKind = Literal["local", "ray", "slurm"]
EXECUTORS: tuple[ExecutorKind, ...] = ("local", "ray", "slurm")


class StageError(RuntimeError):
    """A stage ended with tasks that did not complete (their logs name the cause)."""


@dataclass(frozen=True)
class Stage:
    """One datatrove pipeline run on `tasks` tasks; `pipeline` is a list of datatrove steps."""

    name: str
    pipeline: list[Any]
    tasks: int


@dataclass(frozen=True)
class ExecutorConfig:
    """Where and how wide stages run.

    `workers` tasks run at once (local processes, Ray actors, or the Slurm array's `%` limit).
    `cpus_per_task` / `mem_per_cpu_gb` are what a Ray actor or Slurm task reserves.
    Slurm only: `partition`, `time` (HH:MM:SS), `qos`, `venv` (activated in the job script),
    `sbatch_args` (extra `#SBATCH --key=value` lines).
    """

    kind: ExecutorKind = "local"
    workers: int = 1
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2.0
    partition: str | None = None
    time: str = "04:00:00"
    qos: str | None = None
    venv: str | None = None
    sbatch_args: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.kind!r}")
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.kind == "slurm" and not self.partition:
            raise ValueError("--executor slurm needs --partition")


_silenced = False


@contextlib.contextmanager
def _console_log_silenced() -> Iterator[None]:
    """datatrove logs every task to the console; keep only errors there (the task logs keep everything).

    Re-entrant: adding a loguru handler is slow (it inspects sysconfig paths), so nested uses add none.
    """
    global _silenced
    if _silenced:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        logger.remove()
        logger.add(sys.stderr, level="ERROR")
        _silenced = True
        try:
            yield
        finally:
            _silenced = False
            logger.remove()
    logger.add(sys.stderr, level="WARNING")


class QuietExecutor(LocalPipelineExecutor):
    """`LocalPipelineExecutor` whose tasks log to `logging_dir/logs/` but not to the console."""

    def run(self) -> Any:
        with _console_log_silenced():
            if self.workers > 1:
                return super().run()
            # One worker: run the tasks here, as datatrove does, without starting its process manager.
            pipeline: list[Any] = self.pipeline  # type: ignore[has-type]
            for rank in self.get_incomplete_ranks(range(self.tasks)):
                self.pipeline = deepcopy(pipeline)
                self._run_for_rank(rank)
            self.pipeline = pipeline
            return None

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1) -> Any:
        with _console_log_silenced():
            return super()._run_for_rank(rank, local_rank, node_rank)


def stage_logs(work: Path, name: str) -> Path:
    """The logging folder of stage `name` (logs, stats/, completions/)."""
    return Path(work) / "logs" / name


def _incomplete(executor: PipelineExecutor) -> list[int]:
    return list(executor.get_incomplete_ranks(skip_completed=True))


def _local(stage: Stage, logs: Path, config: ExecutorConfig) -> PipelineExecutor:
    return QuietExecutor(
        pipeline=stage.pipeline,
        tasks=stage.tasks,
        workers=min(config.workers, stage.tasks),
        logging_dir=str(logs),
        # fork starts workers in milliseconds; after torch has started its threads in this process
        # (tests, a notebook) forking is unsafe, so fall back to datatrove's default there.
        start_method="forkserver" if "torch" in sys.modules else "fork",
    )


def _ray(stage: Stage, logs: Path, config: ExecutorConfig) -> PipelineExecutor:
    return RayPipelineExecutor(
        pipeline=stage.pipeline,
        tasks=stage.tasks,
        workers=min(config.workers, stage.tasks),
        logging_dir=str(logs),
        cpus_per_task=config.cpus_per_task,
        mem_per_cpu_gb=config.mem_per_cpu_gb,
    )


def slurm_executor(
    stage: Stage, logs: Path, config: ExecutorConfig, depends: PipelineExecutor | None, job_prefix: str
) -> PipelineExecutor:
    """The `SlurmPipelineExecutor` of one stage (a job array of `stage.tasks` tasks after `depends`)."""
    return SlurmPipelineExecutor(
        pipeline=stage.pipeline,
        tasks=stage.tasks,
        workers=config.workers if config.workers > 1 else -1,
        time=config.time,
        partition=config.partition or "",
        cpus_per_task=config.cpus_per_task,
        mem_per_cpu_gb=config.mem_per_cpu_gb,  # type: ignore[arg-type]
        job_name=f"{job_prefix}-{stage.name}",
        qos=config.qos or "",
        venv_path=config.venv,
        sbatch_args=dict(config.sbatch_args),
        logging_dir=str(logs),
        depends=depends,  # type: ignore[arg-type]
        mail_type="NONE",
    )


def ensure_ray() -> None:
    """Join the Ray cluster at `RAY_ADDRESS`, or start a local one, unless this process already has one."""
    import ray  # lazy: seconds to import, and only the Ray executor needs it

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)


def run_stages(
    stages: list[Stage],
    work: Path,
    config: ExecutorConfig,
    job_prefix: str = "chakor",
    on_stage: Callable[[str], None] | None = None,
) -> list[str]:
    """Run `stages` in order (local, ray) or submit them as dependent Slurm jobs.

    Returns the Slurm job ids (empty for local and ray). Raises StageError when a stage leaves tasks
    incomplete; the exception a local task raised propagates as it is.
    """
    config.check()
    if config.kind == "slurm":
        previous: PipelineExecutor | None = None
        executors = []
        for stage in stages:
            previous = slurm_executor(stage, stage_logs(work, stage.name), config, previous, job_prefix)
            executors.append(previous)
        assert previous is not None
        previous.run()
        return [str(executor.job_id) for executor in executors]  # type: ignore[attr-defined]
    if config.kind == "ray":
        ensure_ray()
    build = _ray if config.kind == "ray" else _local
    for stage in stages:
        if on_stage:
            on_stage(stage.name)
        executor = build(stage, stage_logs(work, stage.name), config)
        executor.run()
        if missing := _incomplete(executor):
            logs = stage_logs(work, stage.name) / "logs"
            raise StageError(f"stage {stage.name!r}: tasks {missing} did not complete (see {logs})")
    return []
