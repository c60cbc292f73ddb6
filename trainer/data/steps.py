"""datatrove pipeline steps for `prepare`: read `--source`s, read one task's file, count per source, adapters.

Documents between stages are datatrove JSONL (`JsonlWriter` / `JsonlReader`, orjson):
`{"id", "text", "metadata": {"source", "kind"}}`. The output of `prepare` is flat: `{"id", "text", "source",
"kind"}` (docs/interfaces.md). Every step is picklable, so any executor can ship it to its workers.
"""

from __future__ import annotations

import json
from collections import Counter
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


class ReadSources(PipelineStep):
    """Task `rank` reads source `rank` (one task per `--source`, since `--max-docs/--max-bytes` cap a source
    in reading order) and writes what it dropped to `stats_dir/{rank:05d}.json`."""

    name = "read sources"
    type = "📖 - READER"

    def __init__(
        self, sources: list[Source], stats_dir: Path, max_docs: int | None, max_bytes: int | None
    ) -> None:
        super().__init__()
        self.sources = sources
        self.stats_dir = Path(stats_dir)
        self.max_docs, self.max_bytes = max_docs, max_bytes

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        source = self.sources[rank]
        stats = ReadStats()
        for doc in read_source(source, rank, stats, self.max_docs, self.max_bytes):
            self.stat_update("documents")
            yield Document(text=doc.text, id=doc.id, metadata={"source": doc.source, "kind": doc.kind})
        if stats.documents == 0:
            removed = "".join(f"; {n} {why}" for why, n in sorted(stats.removed.items()))
            raise SourceError(f"source {source.spec!r} has no documents (read {stats.files} files{removed})")
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.stats_dir / f".{rank:05d}.json.tmp"
        tmp.write_text(json.dumps(stats_to_dict(stats)))
        tmp.replace(self.stats_dir / f"{rank:05d}.json")


def read_stats(stats_dir: Path, count: int) -> list[ReadStats]:
    """The ReadStats of sources 0..count-1, as the read tasks wrote them."""
    return [
        stats_from_dict(json.loads((Path(stats_dir) / f"{i:05d}.json").read_text())) for i in range(count)
    ]


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
