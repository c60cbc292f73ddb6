"""`chakor data prepare`: read sources, clean, filter, deduplicate; write document shards + report.json.

Stages:
1. read   - each `--source` into raw JSONL files (undecodable bytes / malformed lines counted),
2. filter - datatrove `LocalPipelineExecutor` (`--workers` processes): clean text, Gopher quality and
            repetition filters for prose, a code filter for code, the optional scorer (filters.py),
3. dedup  - exact and MinHash near duplicates over all sources, in reading order (dedup.py),
4. write  - `docs-{index:05d}.jsonl` (`{"id", "text", "source", "kind"}`) and `report.json`.
Everything is built in a temporary sibling folder and moved into `--out` at the end, so a failure
leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from trainer.data.dedup import DedupConfig, deduplicate
from trainer.data.filters import FilterConfig, filter_steps
from trainer.data.jsonl_steps import JsonlDocumentReader, JsonlDocumentWriter
from trainer.data.sources import ReadStats, Source, SourceError, parse_source, read_source

DOCS_PER_SHARD = 5_000
REPORT_NAME = "report.json"


@dataclass
class PrepareConfig:
    """Everything `prepare` needs; `weights` maps a source spec to its mixing weight (default 1)."""

    sources: list[str]
    out_dir: Path
    weights: dict[str, float] = field(default_factory=dict)
    workers: int = 1
    seed: int = 0
    max_docs: int | None = None
    max_bytes: int | None = None
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)


def check_config(config: PrepareConfig) -> list[Source]:
    """Parse and check sources and weights before anything is written."""
    if not config.sources:
        raise SourceError("no --source given")
    sources = [parse_source(spec) for spec in config.sources]
    if len({s.spec for s in sources}) != len(sources):
        raise SourceError("a --source is given twice")
    for spec, weight in config.weights.items():
        if spec not in config.sources:
            raise SourceError(f"--weight names {spec!r}, which is not a --source")
        if not weight > 0:
            raise SourceError(f"--weight for {spec!r} must be positive, got {weight}")
    if config.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {config.workers}")
    return sources


def _read_all(
    sources: list[Source], config: PrepareConfig, raw_dir: Path, progress: Progress
) -> dict[str, ReadStats]:
    raw_dir.mkdir(parents=True)
    files = [(raw_dir / f"{i:03d}.jsonl").open("w", encoding="utf-8") for i in range(config.workers)]
    stats: dict[str, ReadStats] = {}
    task = progress.add_task("read sources", total=len(sources))
    try:
        for index, source in enumerate(sources):
            source_stats = stats[source.spec] = ReadStats()
            for n, doc in enumerate(
                read_source(source, index, source_stats, config.max_docs, config.max_bytes)
            ):
                record = {
                    "id": doc.id,
                    "text": doc.text,
                    "metadata": {"source": doc.source, "kind": doc.kind},
                }
                files[n % len(files)].write(json.dumps(record, ensure_ascii=False) + "\n")
            if source_stats.documents == 0:
                removed = "".join(f"; {n} {why}" for why, n in sorted(source_stats.removed.items()))
                raise SourceError(
                    f"source {source.spec!r} has no documents (read {source_stats.files} files{removed})"
                )
            progress.advance(task)
    finally:
        for handle in files:
            handle.close()
    return stats


def _filter(config: PrepareConfig, raw_dir: Path, filtered_dir: Path, logs_dir: Path) -> list[dict[str, Any]]:
    from trainer.data.executor import QuietExecutor

    executor = QuietExecutor(
        pipeline=[
            JsonlDocumentReader(raw_dir),
            *filter_steps(config.filters),
            JsonlDocumentWriter(filtered_dir),
        ],
        tasks=config.workers,
        workers=config.workers,
        logging_dir=str(logs_dir),
        skip_completed=False,
    )
    return [step.to_dict() for step in executor.run().stats]


def _filter_removals(step_stats: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    removals: dict[str, dict[str, int]] = {}
    for step in step_stats:
        reasons = {
            key.removeprefix("dropped_"): int(value["total"] if isinstance(value, dict) else value)
            for key, value in step["stats"].items()
            if key.startswith("dropped_")
        }
        if reasons:
            removals[step["name"].split(": ", 1)[-1]] = dict(sorted(reasons.items()))
    return removals


def _filtered_docs(filtered_dir: Path) -> list[dict[str, Any]]:
    docs = [
        json.loads(line)
        for path in sorted(filtered_dir.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    return sorted(docs, key=lambda doc: doc["id"])


def _write_shards(docs: list[dict[str, Any]], out_dir: Path) -> list[str]:
    names = []
    for start in range(0, len(docs), DOCS_PER_SHARD):
        name = f"docs-{start // DOCS_PER_SHARD:05d}.jsonl"
        with (out_dir / name).open("w", encoding="utf-8") as handle:
            for doc in docs[start : start + DOCS_PER_SHARD]:
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
        names.append(name)
    return names


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


def prepare(config: PrepareConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the whole preparation; returns the report (also written to `out_dir/report.json`)."""
    sources = check_config(config)
    out_dir = Path(config.out_dir).resolve()
    _check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        with progress or Progress(transient=True) as bar:
            read_stats = _read_all(sources, config, work / "raw", bar)
            task = bar.add_task("clean + filter", total=None)
            step_stats = _filter(config, work / "raw", work / "filtered", work / "logs")
            bar.update(task, total=1, completed=1)
            docs = _filtered_docs(work / "filtered")
            dedup_removed: Counter[str] = Counter()
            pairs = bar.track(((d["id"], d["text"]) for d in docs), total=len(docs), description="dedup")
            kept_ids = set(deduplicate(pairs, config.dedup, dedup_removed))
        kept = [_output_record(doc) for doc in docs if doc["id"] in kept_ids]
        if not kept:
            read = sum(stats.documents for stats in read_stats.values())
            raise ValueError(f"all {read} documents read were removed by the filters; nothing to write")
        built = work / "out"
        built.mkdir()
        shards = _write_shards(kept, built)
        report = _report(config, sources, read_stats, step_stats, docs, dedup_removed, kept, shards)
        (built / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _replace_dir(built, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _output_record(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["id"], "text": doc["text"], **doc["metadata"]}


def _report(
    config: PrepareConfig,
    sources: list[Source],
    read_stats: dict[str, ReadStats],
    step_stats: list[dict[str, Any]],
    filtered: list[dict[str, Any]],
    dedup_removed: Counter[str],
    kept: list[dict[str, Any]],
    shards: list[str],
) -> dict[str, Any]:
    after_filters = Counter(doc["metadata"]["source"] for doc in filtered)
    kept_docs = Counter(doc["source"] for doc in kept)
    kept_bytes: Counter[str] = Counter()
    for doc in kept:
        kept_bytes[doc["source"]] += len(doc["text"].encode("utf-8"))
    read_removed: Counter[str] = Counter()
    for stats in read_stats.values():
        read_removed.update(stats.removed)
    return {
        "sources": {
            s.spec: {
                "weight": config.weights.get(s.spec, 1.0),
                "files": read_stats[s.spec].files,
                "skipped_files": read_stats[s.spec].skipped_files,
                "read_docs": read_stats[s.spec].documents,
                "read_bytes": read_stats[s.spec].bytes,
                "undecodable_bytes": read_stats[s.spec].undecodable_bytes,
                "malformed_lines": read_stats[s.spec].malformed_lines,
                "after_filters": after_filters[s.spec],
                "kept_docs": kept_docs[s.spec],
                "kept_bytes": kept_bytes[s.spec],
            }
            for s in sources
        },
        "removed": {
            "read": dict(sorted(read_removed.items())),
            **_filter_removals(step_stats),
            "dedup": dict(sorted(dedup_removed.items())),
        },
        "documents": len(kept),
        "bytes": sum(kept_bytes.values()),
        "shards": shards,
        "seed": config.seed,
        "filters": {k: v for k, v in asdict(config.filters).items() if k != "scorer"}
        | {"scorer": getattr(config.filters.scorer, "__name__", None)},
        "dedup": asdict(config.dedup),
    }


def iter_documents(data_dir: Path) -> Iterator[dict[str, Any]]:
    """The documents of a `prepare` output, in order (`{"id", "text", "source", "kind"}`).

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
    return json.loads(path.read_text(encoding="utf-8"))
