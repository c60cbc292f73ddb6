"""Data sources: parse `--source` specs and read them into documents, counting every problem.

A spec is one of
- `local:python-docs` / `local:python-code`: built-in corpora (no download),
- `DIR`: every `.txt .md .rst .py .jsonl` file below it (`.py` is code, the rest prose),
- `FILE.txt|.md|.rst|.py`: one document,
- `FILE.jsonl[:field]`: one document per line, text in `field` (default `text`).
Undecodable bytes are dropped and counted (a document that is more than 1% undecodable is removed);
malformed JSONL lines are skipped and their line numbers reported. Reading never crashes on content.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trainer.data import builtin

Kind = Literal["prose", "code"]
BUILTIN_SOURCES = ("local:python-docs", "local:python-code")
BUILTIN_MAX_BYTES = 2_000_000
PROSE_SUFFIXES = {".txt", ".md", ".rst"}
CODE_SUFFIXES = {".py"}
MAX_UNDECODABLE_FRACTION = 0.01
MAX_REPORTED_LINES = 20


class SourceError(ValueError):
    """A `--source` spec names something that is missing, unreadable or empty."""


@dataclass(frozen=True)
class Source:
    """One parsed `--source` spec."""

    spec: str
    path: Path | None = None
    field: str = "text"

    @property
    def builtin(self) -> bool:
        return self.path is None


@dataclass
class RawDocument:
    """A document as read, before cleaning and filtering."""

    id: str
    text: str
    source: str
    kind: Kind


@dataclass
class ReadStats:
    """What reading one source produced and what it had to drop."""

    documents: int = 0
    bytes: int = 0
    files: int = 0
    undecodable_bytes: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    malformed_lines: dict[str, list[int]] = field(default_factory=dict)
    skipped_files: int = 0

    def note_malformed(self, path: Path, line_number: int) -> None:
        self.removed["malformed_jsonl_line"] += 1
        lines = self.malformed_lines.setdefault(str(path), [])
        if len(lines) < MAX_REPORTED_LINES:
            lines.append(line_number)


def document_id(source_index: int, n: int) -> str:
    """`SSSS-NNNNNNNNNNNN`: fixed widths (10^4 sources, 10^12 documents each), so ids sort as numbers."""
    if not (0 <= source_index < 10**4 and 0 <= n < 10**12):
        raise ValueError(f"document number {n} of source {source_index} is out of the id range")
    return f"{source_index:04d}-{n:012d}"


def parse_source(spec: str) -> Source:
    """Parse a `--source` spec, checking that what it names exists."""
    if spec.startswith("local:"):
        if spec not in BUILTIN_SOURCES:
            raise SourceError(f"unknown built-in source {spec!r}; choose from {', '.join(BUILTIN_SOURCES)}")
        return Source(spec)
    path_part, _, field_name = spec.rpartition(":") if ".jsonl:" in spec else (spec, "", "")
    path = Path(path_part).expanduser()
    if not path.exists():
        raise SourceError(f"source {spec!r}: {path} does not exist")
    if field_name and not path.is_file():
        raise SourceError(f"source {spec!r}: a field can only be given for a .jsonl file")
    if path.is_file() and path.suffix not in PROSE_SUFFIXES | CODE_SUFFIXES | {".jsonl"}:
        raise SourceError(
            f"source {spec!r}: unsupported file type {path.suffix!r} (use .txt .md .rst .py .jsonl)"
        )
    return Source(spec, path=path, field=field_name or "text")


def decode(raw: bytes, stats: ReadStats) -> str | None:
    """UTF-8 text with undecodable bytes dropped and counted; None when too much of it is undecodable."""
    text = raw.decode("utf-8", errors="ignore")
    bad = len(raw) - len(text.encode("utf-8"))
    stats.undecodable_bytes += bad
    if bad > MAX_UNDECODABLE_FRACTION * len(raw):
        stats.removed["undecodable"] += 1
        return None
    return text


def _kind_of(path: Path) -> Kind:
    return "code" if path.suffix in CODE_SUFFIXES else "prose"


def _read_jsonl(path: Path, field_name: str, stats: ReadStats) -> Iterator[str]:
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            text = decode(line, stats)
            if text is None:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                stats.note_malformed(path, line_number)
                continue
            value = record.get(field_name) if isinstance(record, dict) else None
            if not isinstance(value, str):
                stats.note_malformed(path, line_number)
                continue
            yield value


def _read_path(path: Path, field_name: str, stats: ReadStats) -> Iterator[tuple[str, Kind]]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if file.suffix == ".jsonl":
            stats.files += 1
            for text in _read_jsonl(file, field_name, stats):
                yield text, "prose"
        elif file.suffix in PROSE_SUFFIXES | CODE_SUFFIXES:
            stats.files += 1
            content = decode(file.read_bytes(), stats)
            if content is not None:
                yield content, _kind_of(file)
        else:
            stats.skipped_files += 1


def _read_builtin(spec: str, stats: ReadStats) -> Iterator[tuple[str, Kind]]:
    if spec == "local:python-docs":
        for text in builtin.python_docs():
            yield text, "prose"
    else:
        for file in builtin.python_code_files():
            stats.files += 1
            content = decode(file.read_bytes(), stats)
            if content is not None:
                yield content, "code"


def read_source(
    source: Source, index: int, stats: ReadStats, max_docs: int | None = None, max_bytes: int | None = None
) -> Iterator[RawDocument]:
    """Documents of one source, in a fixed order, stopping at `max_docs` / `max_bytes` (UTF-8).

    Built-in sources are capped at BUILTIN_MAX_BYTES unless `max_bytes` says otherwise.
    Document ids are `document_id(index, n)`, so sorting ids restores the reading order.
    """
    if max_bytes is None and source.builtin:
        max_bytes = BUILTIN_MAX_BYTES
    items = (
        _read_builtin(source.spec, stats)
        if source.path is None
        else _read_path(source.path, source.field, stats)
    )
    for text, kind in items:
        if not text.strip():
            stats.removed["empty"] += 1
            continue
        if max_docs is not None and stats.documents >= max_docs:
            break
        size = len(text.encode("utf-8"))
        if max_bytes is not None and stats.bytes + size > max_bytes and stats.documents > 0:
            break
        yield RawDocument(document_id(index, stats.documents), text, source.spec, kind)
        stats.documents += 1
        stats.bytes += size
