"""`chakor data prepare`: read sources, clean, filter, deduplicate; write document files + report.json.

One streaming pipeline of datatrove stages (executor.py runs them locally, on Ray or on Slurm):

| stage           | tasks            | steps                                                                   |
|-----------------|------------------|-------------------------------------------------------------------------|
| read            | one per source or file | read the source (sources.py) -> raw JSONL, 4 MB files             |
| [perplexity-scores] | `tasks`      | with `--drop-worst`: the filters, then score what passes (perplexity.py) |
| filter          | `tasks`          | clean, Gopher quality/repetition, code filter, [perplexity] -> exact-dedup signatures |
| exact-find      | 1                | merge the sorted hash files                                             |
| exact-filter    | `tasks`          | drop exact copies -> MinHash signatures                                 |
| minhash-buckets | 14 (LSH bands)   | duplicate pairs per band                                                |
| minhash-cluster | 1                | union-find over the pairs                                               |
| minhash-filter  | `tasks`          | keep one document per cluster -> `docs-{task:05d}.jsonl`                |
| finish          | 1                | report.json from the stages' stats; move the output into `--out`        |

Documents stream from file to file: no stage holds the corpus, and memory per task depends on that
task's share of the data. All intermediate files live in a hidden work folder next to `--out`
(`.NAME.work-FINGERPRINT`), named by a hash of the options and the source files' names, sizes and
mtimes; datatrove marks each finished task there, so re-running the same command after a crash
redoes only the unfinished tasks. The work folder is removed after a local or Ray run succeeds (and on
bad input); `--out` is replaced only at the very end, so a failure never leaves it half-written.

Output: `docs-*.jsonl` (`{"id", "text", "source", "kind"}`, ids from `sources.document_id`) and
`report.json` (per source: read/kept documents and bytes; per step and reason: removed documents).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from trainer.data import dedup
from trainer.data.executor import ExecutorConfig, Stage, run_stages, stage_logs
from trainer.data.filters import FilterConfig, filter_steps, perplexity_scoring_steps
from trainer.data.perplexity import check_export
from trainer.data.sources import ReadStats, Source, SourceError, parse_source, source_listing
from trainer.data.steps import (
    RAW_FILE_BYTES,
    CountBySource,
    RankFileReader,
    ReadSources,
    ReadUnit,
    check_read,
    output_writer,
    raw_reader,
    raw_writer,
    read_stats,
    read_units,
)

REPORT_NAME = "report.json"
WORK_PREFIX = ".{name}.work-"


@dataclass
class PrepareConfig:
    """Everything `prepare` needs; `weights` maps a source spec to its mixing weight (default 1).

    `max_docs` / `max_bytes` cap every source; `limits` caps one source's documents (`--limit SPEC=N`),
    as does a spec's own `?limit=N`; the smallest cap given applies.

    `workers` tasks run at once; `tasks` (default `workers`) is how many tasks share the filter and
    dedup stages (more tasks: less memory each, finer-grained resume).
    """

    sources: list[str]
    out_dir: Path
    weights: dict[str, float] = field(default_factory=dict)
    workers: int = 1
    tasks: int | None = None
    seed: int = 0
    max_docs: int | None = None
    max_bytes: int | None = None
    limits: dict[str, int] = field(default_factory=dict)
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: dedup.DedupConfig = field(default_factory=dedup.DedupConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    @property
    def task_count(self) -> int:
        return self.tasks or self.workers


def check_config(config: PrepareConfig) -> list[Source]:
    """Parse and check sources, weights and options before anything is written."""
    if not config.sources:
        raise SourceError("no --source given")
    sources = [parse_source(spec) for spec in config.sources]
    if len({s.spec for s in sources}) != len(sources):
        raise SourceError("a --source is given twice")
    for spec, limit in config.limits.items():
        if spec not in config.sources:
            raise SourceError(f"--limit names {spec!r}, which is not a --source")
        if limit < 1:
            raise SourceError(f"--limit for {spec!r} must be at least 1, got {limit}")
    for spec, weight in config.weights.items():
        if spec not in config.sources:
            raise SourceError(f"--weight names {spec!r}, which is not a --source")
        if not weight > 0:
            raise SourceError(f"--weight for {spec!r} must be positive, got {weight}")
    if config.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {config.workers}")
    if config.tasks is not None and config.tasks < 1:
        raise ValueError(f"--tasks must be at least 1, got {config.tasks}")
    if config.filters.perplexity_model is not None:
        worst = config.filters.drop_worst
        if worst is not None and not 0 < worst < 100:
            raise ValueError(f"--drop-worst must be a percentage between 0 and 100, got {worst}")
        if not config.filters.max_perplexity > 0:
            raise ValueError(f"--max-perplexity must be positive, got {config.filters.max_perplexity}")
        config.filters = replace(
            config.filters, perplexity_model=check_export(config.filters.perplexity_model)
        )
    replace(config.executor, workers=config.workers).check()
    return sources


def source_caps(config: PrepareConfig, sources: list[Source]) -> list[int | None]:
    """Each source's document cap: the smallest of `--max-docs`, `--limit SPEC=N` and the spec's `?limit=`."""
    caps = []
    for source in sources:
        given = [c for c in (config.max_docs, config.limits.get(source.spec), source.limit) if c is not None]
        caps.append(min(given) if given else None)
    return caps


def fingerprint(config: PrepareConfig, sources: list[Source]) -> str:
    """Hash of everything that decides the output (and how the tasks divide the work)."""
    model = config.filters.perplexity_model
    state = {
        "sources": [source_listing(s) for s in sources],
        "weights": config.weights,
        "tasks": config.task_count,
        "seed": config.seed,
        "caps": [source_caps(config, sources), config.max_bytes],
        "filters": {k: str(v) for k, v in asdict(config.filters).items()},
        "model": source_listing(Source(str(model), "text", location=str(model))) if model else None,
        "dedup": asdict(config.dedup),
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Plan:
    """The stages of one `prepare` run and the folders they share."""

    work: Path
    out_dir: Path
    stages: list[Stage]


def work_dir(out_dir: Path, digest: str) -> Path:
    return out_dir.parent / (WORK_PREFIX.format(name=out_dir.name) + digest[:16])


def _remove_stale_work(out_dir: Path, keep: Path) -> None:
    for path in out_dir.parent.glob(WORK_PREFIX.format(name=out_dir.name) + "*"):
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)


def plan(config: PrepareConfig) -> Plan:
    """Check the options and lay out the stages (creates the work folder)."""
    sources = check_config(config)
    out_dir = Path(config.out_dir).resolve()
    _check_out_dir(out_dir)
    digest = fingerprint(config, sources)
    work = work_dir(out_dir, digest)
    _remove_stale_work(out_dir, keep=work)
    folders = dedup.DedupFolders(work / "dedup")
    for path in (
        work / "raw",
        work / "filtered",
        work / "unique",
        work / "out",
        folders.exact_sigs,
        folders.exact_dups,
        folders.minhash_sigs,
        folders.minhash_buckets,
        folders.minhash_clusters,
    ):
        path.mkdir(parents=True, exist_ok=True)
    tasks = config.task_count
    units = read_units(sources, source_caps(config, sources), config.max_bytes)
    finish = FinishPrepare(work, out_dir, sources, units, config, digest)
    stages = [
        Stage(
            "read",
            [ReadSources(units, work / "read-stats"), raw_writer(work / "raw", RAW_FILE_BYTES)],
            len(units),
        ),
        Stage(
            "filter",
            [
                raw_reader(work / "raw"),
                *filter_steps(config.filters, work / "perplexity"),
                CountBySource("after filters"),
                raw_writer(work / "filtered"),
                dedup.exact_signature(folders),
            ],
            tasks,
        ),
        Stage("exact-find", [dedup.exact_find(folders)], 1),
        Stage(
            "exact-filter",
            [
                RankFileReader(work / "filtered"),
                dedup.exact_filter(folders),
                raw_writer(work / "unique"),
                dedup.minhash_signature(folders, config.dedup),
            ],
            tasks,
        ),
        Stage("minhash-buckets", [dedup.minhash_buckets(folders, config.dedup)], config.dedup.num_buckets),
        Stage("minhash-cluster", [dedup.minhash_cluster(folders, config.dedup)], 1),
        Stage(
            "minhash-filter",
            [
                RankFileReader(work / "unique"),
                dedup.minhash_filter(folders),
                CountBySource("kept"),
                output_writer(work / "out"),
            ],
            tasks,
        ),
        Stage("finish", [finish], 1),
    ]
    if config.filters.perplexity_model is not None and config.filters.drop_worst is not None:
        scoring = [raw_reader(work / "raw"), *perplexity_scoring_steps(config.filters, work / "perplexity")]
        stages.insert(1, Stage("perplexity-scores", scoring, tasks))
    return Plan(work, out_dir, stages)


def prepare(config: PrepareConfig, on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole preparation locally or on Ray; returns the report (also in `out_dir/report.json`)."""
    if config.executor.kind == "slurm":
        raise ValueError("use submit_prepare for --executor slurm")
    layout = plan(config)
    executor = replace(config.executor, workers=config.workers)
    try:
        run_stages(layout.stages, layout.work, executor, job_prefix="chakor-prepare", on_stage=on_stage)
    except (SourceError, ValueError):
        shutil.rmtree(layout.work, ignore_errors=True)  # bad input: nothing worth resuming
        raise
    shutil.rmtree(layout.work, ignore_errors=True)
    return load_report(layout.out_dir)


def submit_prepare(config: PrepareConfig) -> tuple[list[str], Path]:
    """Submit the stages as dependent Slurm job arrays; returns the job ids and the work folder."""
    layout = plan(config)
    executor = replace(config.executor, workers=config.workers)
    return run_stages(layout.stages, layout.work, executor, job_prefix="chakor-prepare"), layout.work


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an `--out` folder that holds anything but an earlier `prepare` output."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / REPORT_NAME).is_file():
        raise FileExistsError(
            f"{out_dir} exists and is not a `chakor data prepare` output; choose another --out"
        )


def _replace_dir(built: Path, out_dir: Path) -> None:
    """Move `built` to `out_dir`, replacing an earlier `prepare` output but never other files."""
    _check_out_dir(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(built, out_dir)


def _stage_stats(work: Path, name: str) -> list[dict[str, Any]]:
    """The stats of every task of a stage, summed, as datatrove's per-step dicts."""
    total = PipelineStats()
    for path in sorted((stage_logs(work, name) / "stats").glob("*.json")):
        total += PipelineStats.from_json(json.loads(path.read_text()))
    return [step.to_dict() for step in total.stats]


def _value(metric: Any) -> int:
    return int(metric["total"] if isinstance(metric, dict) else metric)


def _step_name(step: dict[str, Any]) -> str:
    return str(step["name"]).split(": ", 1)[-1]


def _removals(steps: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """`{step: {reason: count}}` from the filters' `dropped_REASON` stats."""
    removals: dict[str, dict[str, int]] = {}
    for step in steps:
        reasons = {
            key.removeprefix("dropped_"): _value(value)
            for key, value in step["stats"].items()
            if key.startswith("dropped_")
        }
        if reasons:
            removals[_step_name(step)] = dict(sorted(reasons.items()))
    return removals


def _dropped(steps: list[dict[str, Any]], name: str) -> int:
    return sum(_value(s["stats"].get("dropped", 0)) for s in steps if _step_name(s) == name)


def _per_source(steps: list[dict[str, Any]], name: str, what: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for step in steps:
        if _step_name(step) == name:
            for key, value in step["stats"].items():
                if key.startswith(f"{what}|"):
                    counts[key.split("|", 1)[1]] = _value(value)
    return counts


class FinishPrepare(PipelineStep):
    """Last stage: build report.json from the earlier stages' stats and move the output into `--out`."""

    name = "finish"
    type = "📝 - REPORT"

    def __init__(
        self,
        work: Path,
        out_dir: Path,
        sources: list[Source],
        units: list[ReadUnit],
        config: PrepareConfig,
        digest: str,
    ) -> None:
        super().__init__()
        self.work, self.out_dir, self.sources, self.digest = Path(work), Path(out_dir), sources, digest
        self.units = units
        self.weights = dict(config.weights)
        self.seed = config.seed
        self.filters = {k: v for k, v in asdict(config.filters).items() if k != "perplexity_model"} | {
            "perplexity_model": str(config.filters.perplexity_model)
            if config.filters.perplexity_model
            else None
        }
        self.dedup = asdict(config.dedup)
        self.executor = config.executor.kind
        self.tasks = config.task_count

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        built = self.work / "out"
        report_path = self.out_dir / REPORT_NAME
        if (  # moved by an earlier try that died before datatrove marked the task done
            not built.exists()
            and report_path.is_file()
            and json.loads(report_path.read_text()).get("fingerprint") == self.digest
        ):
            return iter(())
        read = read_stats(self.work / "read-stats", self.units, len(self.sources))
        for source, stats in zip(self.sources, read, strict=True):
            check_read(source, stats)  # sources read in parts; a one-task source was checked by its task
        report = self.report(read)
        if report["documents"] == 0:
            read = sum(info["read_docs"] for info in report["sources"].values())
            raise ValueError(f"all {read} documents read were removed by the filters; nothing to write")
        (built / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _replace_dir(built, self.out_dir)
        return iter(())

    def report(self, read: list[ReadStats]) -> dict[str, Any]:
        filtered = _stage_stats(self.work, "filter")
        exact = _stage_stats(self.work, "exact-filter")
        near = _stage_stats(self.work, "minhash-filter")
        after_filters = _per_source(filtered, "after filters", "docs")
        kept_docs = _per_source(near, "kept", "docs")
        kept_bytes = _per_source(near, "kept", "bytes")
        read_removed: dict[str, int] = {}
        for stats in read:
            for reason, count in stats.removed.items():
                read_removed[reason] = read_removed.get(reason, 0) + count
        shards = sorted(p.name for p in (self.work / "out").glob("docs-*.jsonl"))
        return {
            "sources": {
                s.spec: {
                    "weight": self.weights.get(s.spec, 1.0),
                    "files": stats.files,
                    "skipped_files": stats.skipped_files,
                    "read_docs": stats.documents,
                    "read_bytes": stats.bytes,
                    "undecodable_bytes": stats.undecodable_bytes,
                    "malformed_lines": stats.malformed_lines,
                    "after_filters": after_filters.get(s.spec, 0),
                    "kept_docs": kept_docs.get(s.spec, 0),
                    "kept_bytes": kept_bytes.get(s.spec, 0),
                }
                for s, stats in zip(self.sources, read, strict=True)
            },
            "removed": {
                "read": dict(sorted(read_removed.items())),
                **_removals(filtered),
                "dedup": {
                    "exact_duplicate": _dropped(exact, "exact dedup"),
                    "near_duplicate": _dropped(near, "near dedup"),
                },
            },
            "documents": sum(kept_docs.values()),
            "bytes": sum(kept_bytes.values()),
            "shards": shards,
            "seed": self.seed,
            "filters": self.filters,
            "dedup": self.dedup,
            "executor": self.executor,
            "tasks": self.tasks,
            "fingerprint": self.digest,
        }


def iter_documents(data_dir: Path) -> Iterator[dict[str, Any]]:
    """The documents of a `prepare` output, file by file (`{"id", "text", "source", "kind"}`).

    Checks the folder at once (not at the first `next`), so errors surface before any work starts.
    """
    data_dir = Path(data_dir)
    if not (data_dir / REPORT_NAME).is_file():
        raise FileNotFoundError(f"{data_dir} is not a `chakor data prepare` output (no {REPORT_NAME})")
    return _read_docs(sorted(data_dir.glob("docs-*.jsonl")))


def _read_docs(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


def load_report(data_dir: Path) -> dict[str, Any]:
    """The `report.json` of a `prepare` output."""
    path = Path(data_dir) / REPORT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{data_dir} is not a `chakor data prepare` output (no {REPORT_NAME})")
    return json.loads(path.read_text())
