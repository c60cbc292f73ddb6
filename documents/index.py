"""`DocumentIndex`: an embedded tantivy index on disk, updated incrementally, searched with BM25.

Why tantivy (0.27.0, Python bindings of the Rust engine): its index is a folder of immutable segments
with deletes by term and atomic commits, so adding one folder or replacing one changed file writes
only new segments (bm25s 0.3.16 rebuilds and re-saves its whole sparse matrix on every change), it
streams documents through a bounded writer heap instead of holding a corpus in memory, readers in
other processes (the backend) see a commit after `reload()`, and the wheel has no dependencies.

Layout of the folder: tantivy's own files, plus `collections.json`:
`{name: {"source": spec, "files": {file key: sha256}, "passages": n}}`. A collection is what one
`chakor docs add` named; a file key is a file's absolute path, or `local:python-docs`. The registry is
written after each commit; passages are always replaced by deleting their file key first, so a crash
between the two is repaired by the next `add` or `reindex`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import tantivy

from common.chat import SearchResult
from common.hashing import sha256_file
from documents.passages import (
    BUILTIN_DOCS,
    DocumentSourceError,
    Passage,
    builtin_fingerprint,
    builtin_passages,
    file_passages,
    source_files,
)

REGISTRY = "collections.json"
WRITER_HEAP_BYTES = 50_000_000  # tantivy's minimum is 15 MB per thread; one thread is enough here
TITLE_BOOST = 3.0  # a query naming an API ("json.dumps") should rank that API's own passage first
MAX_QUERY_WORDS = 32
WORD = re.compile(r"\w+")


class DocumentIndexError(RuntimeError):
    """The index folder is missing, locked by another writer, or not a Chakor document index."""


class DocumentProvider(Protocol):
    """Anything that returns the best passages for a free-text query: `DocumentIndex`, or a search server
    (docs/documents.md) behind the same method."""

    def search(self, query: str, limit: int = 5) -> list[SearchResult]: ...


@dataclass(frozen=True)
class Collection:
    """What one `chakor docs add` registered."""

    name: str
    source: str
    files: int
    passages: int


@dataclass(frozen=True)
class Change:
    """What an add or reindex did to one collection."""

    name: str
    added_files: int
    updated_files: int
    removed_files: int
    unchanged_files: int
    passages: int


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("key", stored=True, tokenizer_name="raw")
    builder.add_text_field("collection", stored=True, tokenizer_name="raw")
    builder.add_text_field("title", stored=True)
    builder.add_text_field("url", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("body", stored=False, tokenizer_name="en_stem")
    builder.add_text_field("snippet", stored=True, tokenizer_name="raw", index_option="basic")
    return builder.build()


def query_text(query: str) -> str:
    """The words of a free-text query, lower-cased, as tantivy query syntax that cannot fail to parse.

    Lower case also turns the parser's operators (AND, OR, NOT) into plain words.
    """
    return " ".join(WORD.findall(query.lower())[:MAX_QUERY_WORDS])


class DocumentIndex:
    """The document index in `path` (created on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._index: tantivy.Index | None = None

    @property
    def exists(self) -> bool:
        return (self.path / REGISTRY).is_file()

    def _open(self, create: bool) -> tantivy.Index:
        if self._index is None:
            if not create and not self.exists:
                raise DocumentIndexError(
                    f"no document index at {self.path} (add documents with `chakor docs add PATH`)"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            self._index = tantivy.Index(_schema(), path=str(self.path), reuse=True)
        return self._index

    def _registry(self) -> dict[str, Any]:
        path = self.path / REGISTRY
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def _save_registry(self, registry: dict[str, Any]) -> None:
        tmp = self.path / f".{REGISTRY}.tmp"
        tmp.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / REGISTRY)

    def _writer(self) -> tantivy.IndexWriter:
        try:
            return self._open(create=True).writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
        except ValueError as exc:
            raise DocumentIndexError(
                f"the document index at {self.path} is being written by another process ({exc})"
            ) from None

    # Reading --------------------------------------------------------------------------------

    def collections(self) -> list[Collection]:
        """The registered collections, by name."""
        return [
            Collection(name, info["source"], len(info["files"]), info["passages"])
            for name, info in sorted(self._registry().items())
        ]

    def search(self, query: str, limit: int = 5) -> list[SearchResult]:
        """The best `limit` passages for a free-text query (BM25 over title and body), newest commit."""
        words = query_text(query)
        if not words:
            return []
        index = self._open(create=False)
        index.reload()
        parsed = index.parse_query(words, ["title", "body"], field_boosts={"title": TITLE_BOOST})
        searcher = index.searcher()
        hits = []
        for score, address in searcher.search(parsed, limit).hits:
            doc = searcher.doc(address)
            hits.append(
                SearchResult(
                    title=doc.get_first("title") or "",
                    url=doc.get_first("url") or "",
                    content=doc.get_first("snippet") or "",
                    score=float(score),
                    collection=doc.get_first("collection") or "",
                )
            )
        return hits

    # Writing --------------------------------------------------------------------------------

    def add(self, source: str, name: str | None = None) -> Change:
        """Register `source` (a path or `local:python-docs`) and index what changed since last time."""
        spec = source if source == BUILTIN_DOCS else str(Path(source).expanduser().resolve())
        name = name or spec
        registry = self._registry()
        other = registry.get(name)
        if other is not None and other["source"] != spec:
            raise DocumentIndexError(
                f"a collection named {name!r} already holds {other['source']}; choose another --name"
            )
        if spec != BUILTIN_DOCS and not source_files(Path(spec)):
            raise DocumentSourceError(f"{spec} holds no .txt .md .rst .py or .jsonl files")
        return self._sync(name, spec, registry)

    def reindex(self, name: str | None = None) -> list[Change]:
        """Bring one collection (or all) up to date with its files: changed ones re-read, gone ones dropped."""
        registry = self._registry()
        if name is not None and name not in registry:
            raise DocumentIndexError(f"no collection named {name!r} (see `chakor docs list`)")
        names = [name] if name is not None else sorted(registry)
        return [self._sync(n, registry[n]["source"], registry) for n in names]

    def remove(self, name: str) -> int:
        """Drop a collection and its passages; returns how many passages it had."""
        registry = self._registry()
        if name not in registry:
            raise DocumentIndexError(f"no collection named {name!r} (see `chakor docs list`)")
        writer = self._writer()
        writer.delete_documents_by_term("collection", name)
        writer.commit()
        writer.wait_merging_threads()
        info = registry.pop(name)
        self._save_registry(registry)
        return int(info["passages"])

    def _sync(self, name: str, spec: str, registry: dict[str, Any]) -> Change:
        before: dict[str, str] = dict(registry.get(name, {}).get("files", {}))
        counts = dict(registry.get(name, {}).get("counts", {}))
        current = self._fingerprints(spec)
        writer = self._writer()
        added = updated = 0
        for key, digest in current.items():
            if before.get(key) == digest:
                continue
            added, updated = (added + 1, updated) if key not in before else (added, updated + 1)
            writer.delete_documents_by_term("key", key)
            counts[key] = self._write(writer, name, key, self._passages(spec, key))
        gone = [key for key in before if key not in current]
        for key in gone:
            writer.delete_documents_by_term("key", key)
            counts.pop(key, None)
        writer.commit()
        writer.wait_merging_threads()
        registry[name] = {
            "source": spec,
            "files": current,
            "counts": counts,
            "passages": sum(counts.values()),
        }
        self._save_registry(registry)
        unchanged = len(current) - added - updated
        return Change(name, added, updated, len(gone), unchanged, registry[name]["passages"])

    @staticmethod
    def _fingerprints(spec: str) -> dict[str, str]:
        if spec == BUILTIN_DOCS:
            return {BUILTIN_DOCS: builtin_fingerprint()}
        path = Path(spec)
        if not path.exists():
            return {}  # the folder went away: reindex drops its passages
        return {str(file): sha256_file(file) for file in source_files(path)}

    @staticmethod
    def _passages(spec: str, key: str) -> Iterator[Passage]:
        return builtin_passages() if spec == BUILTIN_DOCS else file_passages(Path(key))

    @staticmethod
    def _write(writer: tantivy.IndexWriter, name: str, key: str, passages: Iterable[Passage]) -> int:
        count = 0
        for passage in passages:
            writer.add_document(
                tantivy.Document(
                    key=key,
                    collection=name,
                    title=passage.title,
                    url=passage.url,
                    body=f"{passage.title}\n{passage.text}",
                    snippet=passage.snippet,
                )
            )
            count += 1
        return count
