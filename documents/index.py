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

Ownership: every passage has an `owner`, `SITE` for what `chakor docs add` indexes (shared by every
user) or a user's id for what they uploaded through the backend (file key `upload:<document id>`; the
backend keeps those documents' metadata in its database, not in the registry). A search names the
owners it may see and the filter is part of the tantivy query, so another owner's passages are never
scored, counted or returned. An index made before owners existed does not open (its schema differs):
`chakor docs reindex` rebuilds it from the registry's sources.

Writers: tantivy allows one `IndexWriter` per index folder. In one process writers take turns on a
lock per folder; across processes (the CLI beside one or more backends) a busy folder is retried for
up to WRITER_WAIT_SECONDS before DocumentIndexError says who holds it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
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
SITE = "site"  # the owner of `chakor docs add` collections; user ids are 24 hex digits, never this
UPLOAD_KEY = "upload:"  # file keys of uploaded documents: `upload:<document id>`
# How long a writer waits for another process's writer (a `chakor docs add` of a large folder can hold
# the lock for minutes; an upload should rather fail with a clear message than hang a request longer).
WRITER_WAIT_SECONDS = 30.0
WRITER_RETRY_SECONDS = 0.2
_writer_locks: dict[Path, threading.Lock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(path: Path) -> threading.Lock:
    """The in-process lock of one index folder (every `DocumentIndex` on it shares it)."""
    with _writer_locks_guard:
        return _writer_locks.setdefault(path.resolve(), threading.Lock())


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
    builder.add_text_field("owner", stored=True, tokenizer_name="raw")
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
        """Whether anything was indexed here (by `chakor docs add` or an upload)."""
        return (self.path / REGISTRY).is_file() or self._has_tantivy_index()

    def _has_tantivy_index(self) -> bool:
        return self.path.is_dir() and tantivy.Index.exists(str(self.path))

    def _open(self, create: bool) -> tantivy.Index:
        if self._index is None:
            if not create and not self.exists:
                raise DocumentIndexError(
                    f"no document index at {self.path} (add documents with `chakor docs add PATH`)"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                self._index = tantivy.Index(_schema(), path=str(self.path), reuse=True)
            except ValueError as exc:
                if "schema does not match" not in str(exc):
                    raise
                raise DocumentIndexError(
                    f"the document index at {self.path} was made by an older Chakor without document "
                    "owners; rebuild it with `chakor docs reindex`"
                ) from None
        return self._index

    def _registry(self) -> dict[str, Any]:
        path = self.path / REGISTRY
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def _save_registry(self, registry: dict[str, Any]) -> None:
        tmp = self.path / f".{REGISTRY}.tmp"
        tmp.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / REGISTRY)

    @contextmanager
    def _writing(self) -> Iterator[tantivy.IndexWriter]:
        """The index's one writer, for one batch of changes that the caller commits; its lock is held
        until the block ends (and the writer is dropped by `wait_merging_threads`)."""
        with _writer_lock(self.path):
            index = self._open(create=True)
            deadline = time.monotonic() + WRITER_WAIT_SECONDS
            while True:
                try:
                    writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
                    break
                except ValueError as exc:
                    if "LockBusy" not in str(exc) or time.monotonic() > deadline:
                        raise DocumentIndexError(
                            f"the document index at {self.path} is being written by another process "
                            f"(waited {WRITER_WAIT_SECONDS:.0f} s; try again when it is done)"
                        ) from None
                    time.sleep(WRITER_RETRY_SECONDS)
            try:
                yield writer
            except BaseException:
                writer.rollback()
                raise
            finally:
                writer.wait_merging_threads()

    # Reading --------------------------------------------------------------------------------

    def collections(self) -> list[Collection]:
        """The registered collections, by name."""
        return [
            Collection(name, info["source"], len(info["files"]), info["passages"])
            for name, info in sorted(self._registry().items())
        ]

    def search(
        self,
        query: str,
        limit: int = 5,
        owners: Sequence[str] = (SITE,),
        collections: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        """The best `limit` passages of `owners` (default: the site's) for a free-text query (BM25 over
        title and body), newest commit; `collections` narrows it to those names. Both filters are
        clauses of the one tantivy query: passages of other owners are never scored."""
        words = query_text(query)
        if not words or not owners or collections == []:
            return []
        index = self._open(create=False)
        index.reload()
        schema = index.schema
        parsed = index.parse_query(words, ["title", "body"], field_boosts={"title": TITLE_BOOST})
        clauses = [
            (tantivy.Occur.Must, parsed),
            (tantivy.Occur.Must, tantivy.Query.term_set_query(schema, "owner", list(owners))),
        ]
        if collections is not None:
            clauses.append(
                (tantivy.Occur.Must, tantivy.Query.term_set_query(schema, "collection", list(collections)))
            )
        searcher = index.searcher()
        hits = []
        for score, address in searcher.search(tantivy.Query.boolean_query(clauses), limit).hits:
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
        if self._outdated():
            self._clear_outdated(registry)
            name = None  # every collection's passages went with the old files
        names = [name] if name is not None else sorted(registry)
        return [self._sync(n, registry[n]["source"], registry) for n in names]

    def _outdated(self) -> bool:
        """Whether the folder holds an index whose schema is not this version's (made without owners)."""
        if not self._has_tantivy_index():
            return False
        return tantivy.Index.open(str(self.path)).schema != _schema()

    def _clear_outdated(self, registry: dict[str, Any]) -> None:
        """Drop an outdated index's files (keeping the registry, emptied of fingerprints) so `_sync`
        re-reads every collection's sources into the current schema."""
        with _writer_lock(self.path):
            for entry in self.path.iterdir():
                if entry.name == REGISTRY:
                    continue
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            for info in registry.values():
                info["files"], info["counts"], info["passages"] = {}, {}, 0
            self._save_registry(registry)
            self._index = None

    # Uploaded documents (owned by a user) ---------------------------------------------------

    def add_owned(self, owner: str, collection: str, document_id: str, passages: Iterable[Passage]) -> int:
        """Index one uploaded document's passages under `owner` (a user id) and `collection`; returns
        how many were written. Committed before it returns: the next search finds them."""
        with self._writing() as writer:
            key = UPLOAD_KEY + document_id
            writer.delete_documents_by_term("key", key)
            count = self._write(writer, owner, collection, key, passages)
            writer.commit()
        return count

    def delete_owned(self, document_ids: Sequence[str]) -> None:
        """Remove uploaded documents' passages (committed before it returns)."""
        if not document_ids:
            return
        with self._writing() as writer:
            for document_id in document_ids:
                writer.delete_documents_by_term("key", UPLOAD_KEY + document_id)
            writer.commit()

    def delete_owner(self, owner: str) -> None:
        """Remove every passage of one user (their account was deleted)."""
        if owner == SITE or not self.exists:
            return
        with self._writing() as writer:
            writer.delete_documents_by_term("owner", owner)
            writer.commit()

    def count_owned(self, owner: str) -> int:
        """How many passages `owner` has in the index (what consistency checks compare)."""
        if not self.exists:
            return 0
        index = self._open(create=False)
        index.reload()
        query = tantivy.Query.term_query(index.schema, "owner", owner)
        found = index.searcher().search(query, 1, count=True)
        return int(found.count or 0)  # type: ignore[attr-defined]  # set with count=True; the stub lacks it

    def remove(self, name: str) -> int:
        """Drop a collection and its passages; returns how many passages it had."""
        registry = self._registry()
        if name not in registry:
            raise DocumentIndexError(f"no collection named {name!r} (see `chakor docs list`)")
        with self._writing() as writer:
            schema = self._open(create=True).schema
            writer.delete_documents_by_query(
                tantivy.Query.boolean_query(
                    [
                        (tantivy.Occur.Must, tantivy.Query.term_query(schema, "collection", name)),
                        (tantivy.Occur.Must, tantivy.Query.term_query(schema, "owner", SITE)),
                    ]
                )
            )
            writer.commit()
        info = registry.pop(name)
        self._save_registry(registry)
        return int(info["passages"])

    def _sync(self, name: str, spec: str, registry: dict[str, Any]) -> Change:
        before: dict[str, str] = dict(registry.get(name, {}).get("files", {}))
        counts = dict(registry.get(name, {}).get("counts", {}))
        current = self._fingerprints(spec)
        added = updated = 0
        gone = [key for key in before if key not in current]
        with self._writing() as writer:
            for key, digest in current.items():
                if before.get(key) == digest:
                    continue
                added, updated = (added + 1, updated) if key not in before else (added, updated + 1)
                writer.delete_documents_by_term("key", key)
                counts[key] = self._write(writer, SITE, name, key, self._passages(spec, key))
            for key in gone:
                writer.delete_documents_by_term("key", key)
                counts.pop(key, None)
            writer.commit()
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
    def _write(
        writer: tantivy.IndexWriter, owner: str, name: str, key: str, passages: Iterable[Passage]
    ) -> int:
        count = 0
        for passage in passages:
            writer.add_document(
                tantivy.Document(
                    key=key,
                    owner=owner,
                    collection=name,
                    title=passage.title,
                    url=passage.url,
                    body=f"{passage.title}\n{passage.text}",
                    snippet=passage.snippet,
                )
            )
            count += 1
        return count
