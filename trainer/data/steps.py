"""datatrove pipeline steps for `prepare`: read `--source`s (a task per source or file), read one task's
file, count per source, adapters.

Documents between stages are datatrove JSONL (`JsonlWriter` / `JsonlReader`, orjson):
`{"id", "text", "metadata": {"source", "kind"}}`. The output of `prepare` is flat: `{"id", "text", "source",
"kind"}` (docs/interfaces.md). Every step is picklable, so any executor can ship it to its workers.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from trainer.data.sources import ReadStats, Source, SourceError, read_source

RAW_FILE_BYTES = (
    4_000_000  # raw documents roll over to a new file at this size: the unit the filter tasks share
)


def stats_to_dict(stats: ReadStats) -> dict[str, Any]:
    return {
        "documents": stats.documents,
        "bytes": stats.bytes,
        "files": stats.files,
        "undecodable_bytes": stats.undecodable_bytes,
        "removed": dict(stats.removed),
        "malformed_lines": stats.malformed_lines,
        "skipped_files": stats.skipped_files,
    }


def stats_from_dict(data: dict[str, Any]) -> ReadStats:
    return ReadStats(
        documents=data["documents"],
        bytes=data["bytes"],
        files=data["files"],
        undecodable_bytes=data["undecodable_bytes"],
        removed=Counter(data["removed"]),
        malformed_lines=data["malformed_lines"],
        skipped_files=data["skipped_files"],
    )


@dataclass(frozen=True)
class ReadUnit:
    """What one read task reads: source `index` (or, with `part`, one file of it) up to its caps."""

    index: int
    source: Source
    max_docs: int | None
    max_bytes: int | None
    part: int | None = None


def read_units(sources: list[Source], max_docs: list[int | None], max_bytes: int | None) -> list[ReadUnit]:
    """One read task per source, except a multi-file JSONL/parquet source without a cap: one per file,
    so a folder of shards reads in parallel. A capped source stays one task, so its cap takes the first
    documents in reading order, the same on every executor and number of workers."""
    units = []
    for index, (source, cap) in enumerate(zip(sources, max_docs, strict=True)):
        if (
            source.format in ("jsonl", "parquet")
            and len(source.files) > 1
            and cap is None
            and max_bytes is None
        ):
            for part, file in enumerate(source.files):
                units.append(ReadUnit(index, source.with_files((file,)), None, None, part))
        else:
            units.append(ReadUnit(index, source, cap, max_bytes))
    return units


class ReadSources(PipelineStep):
    """Task `rank` reads `units[rank]` and writes what it read and dropped to `stats_dir/{rank:05d}.json`.

    A one-task source with no documents is an error here; a source split into parts is checked once all
    its parts are read (`check_read`)."""

    name = "read sources"
    type = "📖 - READER"

    def __init__(self, units: list[ReadUnit], stats_dir: Path) -> None:
        super().__init__()
        self.units = units
        self.stats_dir = Path(stats_dir)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        unit = self.units[rank]
        stats = ReadStats()
        for doc in read_source(unit.source, unit.index, stats, unit.max_docs, unit.max_bytes, unit.part):
            self.stat_update("documents")
            yield Document(text=doc.text, id=doc.id, metadata={"source": doc.source, "kind": doc.kind})
        if unit.part is None:
            check_read(unit.source, stats)
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.stats_dir / f".{rank:05d}.json.tmp"
        tmp.write_text(json.dumps(stats_to_dict(stats)))
        tmp.replace(self.stats_dir / f"{rank:05d}.json")


def check_read(source: Source, stats: ReadStats) -> None:
    """SourceError when reading `source` gave no documents, with what it dropped."""
    if stats.documents == 0:
        removed = "".join(f"; {n} {why}" for why, n in sorted(stats.removed.items()))
        raise SourceError(f"source {source.spec!r} has no documents (read {stats.files} files{removed})")


def read_stats(stats_dir: Path, units: list[ReadUnit], count: int) -> list[ReadStats]:
    """The ReadStats of sources 0..count-1, summed over their read tasks as the tasks wrote them."""
    merged = [ReadStats() for _ in range(count)]
    for rank, unit in enumerate(units):
        merged[unit.index].merge(
            stats_from_dict(json.loads((Path(stats_dir) / f"{rank:05d}.json").read_text()))
        )
    return merged


class RankFileReader(JsonlReader):
    """Read exactly `folder/{rank:05d}.jsonl` (none if that task wrote nothing).

    The dedup stages number documents by their position in one task's stream, so the task that filters
    must read the same file, in the same order, as the task that made the signatures.
    """

    name = "read task file"

    def __init__(self, folder: Path, pattern: str = "{rank:05d}.jsonl") -> None:
        super().__init__(str(folder), compression=None, add_file_path=False)
        self.pattern = pattern

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        name = self.pattern.format(rank=rank)
        if self.data_folder.exists(name):
            yield from self.read_files_shard([name])


def raw_reader(folder: Path) -> JsonlReader:
    """Share `folder`'s JSONL files among the tasks (file `i` goes to task `i % tasks`)."""
    return JsonlReader(str(folder), compression=None, add_file_path=False, glob_pattern="*.jsonl")


def raw_writer(folder: Path, max_file_bytes: int = -1) -> JsonlWriter:
    """Write `folder/{rank:05d}.jsonl` (with `max_file_bytes`: `000_{rank}.jsonl`, `001_...`)."""
    return JsonlWriter(str(folder), compression=None, max_file_size=max_file_bytes)


def _flat_record(self: JsonlWriter, document: Document) -> dict[str, Any]:
    metadata = document.metadata  # dedup steps add their own keys; the output keeps source and kind
    return {"id": document.id, "text": document.text, "source": metadata["source"], "kind": metadata["kind"]}


def output_writer(folder: Path) -> JsonlWriter:
    """`docs-{rank:05d}.jsonl` with flat `{"id", "text", "source", "kind"}` records."""
    return JsonlWriter(
        str(folder), output_filename="docs-${rank}.jsonl", compression=None, adapter=_flat_record
    )


class CountBySource(PipelineStep):
    """Pass documents through, counting documents and UTF-8 bytes per source (stats `docs|SPEC`, `bytes|SPEC`)."""

    type = "📊 - STATS"

    def __init__(self, name: str) -> None:
        self.name = name  # before PipelineStep.__init__, which names the step's stats
        super().__init__()

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data or ():
            source = doc.metadata["source"]
            self.stat_update(f"docs|{source}")
            self.stat_update(f"bytes|{source}", value=len(doc.text.encode("utf-8")))
            yield doc
