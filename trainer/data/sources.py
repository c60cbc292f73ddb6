"""Data sources: parse `--source` specs, list what they name, and read them into rows and documents.

A spec (`parse_spec`, the one place the syntax lives) is one of
- `local:python-docs` / `local:python-code`: built-in corpora (no download);
- `DIR`: every `.txt .md .rst .py .jsonl` file below it (`.py` is code, the rest prose);
- `FILE.txt|.md|.rst|.py`: one document;
- `PATH_OR_GLOB.jsonl[.gz|.zst|.bz2|.xz][:field]`: one document per line, text in `field` (default `text`);
- `PATH_OR_GLOB.parquet[:field]`: one document per row, only column `field` read, in row batches;
- `hf:NAME[?config=C&split=S&field=F&revision=R&limit=N]`: a Hugging Face dataset streamed with `datasets`
  (NAME is a local folder `datasets.load_dataset` understands, else a Hub id; split defaults to `train`).
PATH may be an fsspec URL (`s3://bucket/prefix/*.parquet`, `hf://datasets/ORG/NAME/...`, `memory://...`);
credentials come from the filesystem's usual environment. Any table spec (JSONL, parquet, hf) may end in
`?key=value&...` with `field`, `limit` (at most N rows are read) and, for chat data, `prompt`/`response`
(a pair of columns); `config`, `split`, `revision` are for `hf:` only. A `?` followed by anything but
`key=value` pairs stays part of a glob.

Reading: parquet through datatrove's `ParquetReader`, Hugging Face datasets through its
`HuggingFaceDatasetReader(streaming=True)`, JSONL through fsspec with the compression inferred from the suffix
(what datatrove's `JsonlReader` does) and our own line parser, because `JsonlReader` stops reading a file at
its first undecodable byte, raises on a line that is valid JSON but not an object, and does not say which
lines it skipped. Undecodable bytes are dropped and counted (a document more than 1% undecodable is removed);
malformed JSONL lines are skipped and their line numbers reported. Content never crashes a read; a missing,
empty, corrupt or unreachable source is a one-line SourceError naming the spec.
"""

from __future__ import annotations

import glob
import io
import json
import posixpath
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import fsspec
from datatrove.pipeline.readers import HuggingFaceDatasetReader, ParquetReader
from fsspec.compression import compr
from fsspec.utils import infer_compression

from trainer.data import builtin

Kind = Literal["prose", "code"]
Format = Literal["builtin", "text", "jsonl", "parquet", "hf"]
BUILTIN_SOURCES = ("local:python-docs", "local:python-code")
BUILTIN_MAX_BYTES = 2_000_000
PROSE_SUFFIXES = {".txt", ".md", ".rst"}
CODE_SUFFIXES = {".py"}
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2", ".jsonl.xz")
PARQUET_SUFFIX = ".parquet"
HF_PREFIX = "hf:"
FILE_OPTIONS = {"field", "limit", "prompt", "response"}
HF_OPTIONS = FILE_OPTIONS | {"config", "split", "revision"}
DEFAULT_SPLIT = "train"
# Rows per batch read from parquet or a streamed dataset: ~1000 web documents are a few MB, small next to a
# task's memory, and big enough that pyarrow's per-batch overhead does not show.
READ_BATCH_ROWS = 1000
MAX_UNDECODABLE_FRACTION = 0.01
MAX_REPORTED_LINES = 20
_SUFFIXES = {"jsonl": JSONL_SUFFIXES, "parquet": (PARQUET_SUFFIX,)}
_OPTIONS = re.compile(r"\?([A-Za-z_]+=[^&?]*(?:&[A-Za-z_]+=[^&?]*)*)$")
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
_GLOB_CHARS = re.compile(r"[*?\[]")


class SourceError(ValueError):
    """A `--source` spec names something that is missing, unreadable or empty."""


@dataclass(frozen=True)
class Source:
    """One parsed `--source` spec (see the module docstring for the syntax).

    `location` is the built-in name, the local path (`text`), the path/glob/URL (`jsonl`, `parquet`) or the
    dataset name/folder (`hf`). `files` are the matched files as fsspec URLs, sorted, once `resolve` has
    listed them (`jsonl`, `parquet`). `field` is None when the spec names none (readers pick their default).
    """

    spec: str
    format: Format
    location: str = ""
    field: str | None = None
    config: str | None = None
    split: str = DEFAULT_SPLIT
    revision: str | None = None
    limit: int | None = None
    prompt: str | None = None
    response: str | None = None
    files: tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        return self.format == "builtin"

    @property
    def path(self) -> Path | None:
        """The local file or folder of a `text` source."""
        return Path(self.location) if self.format == "text" else None

    @property
    def text_field(self) -> str:
        return self.field or "text"

    def with_files(self, files: tuple[str, ...]) -> Source:
        """The same source reading only `files` (one read task's share)."""
        return replace(self, files=files)


@dataclass(frozen=True)
class Row:
    """One record of a table source: a dict of columns (a JSONL line may also be a JSON list), or None
    when the line was not JSON, a JSON scalar or mostly undecodable (`problem` says which). `number`
    counts from 1 within `file` (a JSONL line number, a parquet row, a dataset row)."""

    file: str
    number: int
    record: dict[str, Any] | list[Any] | None
    problem: Literal["malformed", "undecodable"] | None = None


@dataclass
class RawDocument:
    """A document as read, before cleaning and filtering."""

    id: str
    text: str
    source: str
    kind: Kind


@dataclass
class ReadStats:
    """What reading one source (or one read task's share of it) produced and what it had to drop."""

    documents: int = 0
    bytes: int = 0
    files: int = 0
    undecodable_bytes: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    malformed_lines: dict[str, list[int]] = field(default_factory=dict)
    skipped_files: int = 0

    def note_malformed(self, path: Path | str, line_number: int) -> None:
        self.removed["malformed_jsonl_line"] += 1
        lines = self.malformed_lines.setdefault(str(path), [])
        if len(lines) < MAX_REPORTED_LINES:
            lines.append(line_number)

    def merge(self, other: ReadStats) -> None:
        """Add another read task's counts for the same source."""
        self.documents += other.documents
        self.bytes += other.bytes
        self.files += other.files
        self.undecodable_bytes += other.undecodable_bytes
        self.removed.update(other.removed)
        self.skipped_files += other.skipped_files
        for path, lines in other.malformed_lines.items():
            mine = self.malformed_lines.setdefault(path, [])
            mine.extend(lines[: MAX_REPORTED_LINES - len(mine)])


def document_id(source_index: int, n: int, part: int | None = None) -> str:
    """`SSSS-NNNNNNNNNNNN` (or `SSSS-PPPPPP-NNNNNNNNNNNN` for part `P` of a source read by several tasks,
    one per file): fixed widths (10^4 sources, 10^6 parts, 10^12 documents each), so ids sort as numbers."""
    if not (0 <= source_index < 10**4 and 0 <= n < 10**12 and (part is None or 0 <= part < 10**6)):
        raise ValueError(f"document number {n} of source {source_index} is out of the id range")
    if part is None:
        return f"{source_index:04d}-{n:012d}"
    return f"{source_index:04d}-{part:06d}-{n:012d}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _table_format(location: str) -> Format | None:
    """`parquet` / `jsonl` from the suffix; a glob such as `dump.jsonl.*` that mentions `.jsonl` in its
    last part is JSONL too (each file it matches must then have a JSONL suffix)."""
    lowered = location.lower()
    if lowered.endswith(PARQUET_SUFFIX):
        return "parquet"
    last = lowered.rsplit("/", 1)[-1]
    if lowered.endswith(JSONL_SUFFIXES) or (_GLOB_CHARS.search(last) and ".jsonl" in last):
        return "jsonl"
    return None


def _split_options(spec: str, body: str, allowed: set[str]) -> tuple[str, dict[str, str]]:
    match = _OPTIONS.search(body)
    if match is None:
        return body, {}
    options: dict[str, str] = {}
    for pair in match.group(1).split("&"):
        key, _, value = pair.partition("=")
        if key not in allowed:
            raise SourceError(f"source {spec!r}: unknown option {key!r} (use {', '.join(sorted(allowed))})")
        if not value:
            raise SourceError(f"source {spec!r}: option {key!r} needs a value")
        options[key] = value
    return body[: match.start()], options


def _limit(spec: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise SourceError(f"source {spec!r}: limit must be a positive whole number, got {value!r}")
    return int(value)


def parse_spec(spec: str) -> Source:
    """Parse the syntax of a source spec into a Source, without touching any filesystem or network.

    Contract: the result's `format` says how the spec reads (`builtin`, `text`, `jsonl`, `parquet`, `hf`);
    `location` is what follows the format's prefix, with the `:field` suffix and `?options` removed;
    `field`, `config`, `split` (default `train`), `revision`, `limit`, `prompt`, `response` are the
    options given (None when not). `files` is empty. Raises SourceError (one line, naming the spec) for
    an unknown built-in (`local:` other than BUILTIN_SOURCES), an unknown or empty option, a limit that is
    not a positive integer, a field given both as `:field` and `field=`, options or a glob on a path that
    is not JSONL/parquet, and `prompt` without `response`. Call `resolve` (or use `parse_source`) to check
    that the data exists; read records with `iter_rows`.
    """
    if spec.startswith("local:"):
        if spec not in BUILTIN_SOURCES:
            raise SourceError(f"unknown built-in source {spec!r}; choose from {', '.join(BUILTIN_SOURCES)}")
        return Source(spec, "builtin", location=spec)
    if spec.startswith(HF_PREFIX):
        location, options = _split_options(spec, spec[len(HF_PREFIX) :], HF_OPTIONS)
        if not location:
            raise SourceError(f"source {spec!r}: name a dataset after {HF_PREFIX!r}")
        fmt: Format = "hf"
        field_name = options.get("field")
    else:
        location, options = _split_options(spec, spec, FILE_OPTIONS)
        field_name = options.get("field")
        head, sep, tail = location.rpartition(":")
        if sep and _table_format(head) and "/" not in tail:
            if field_name is not None:
                raise SourceError(f"source {spec!r}: give the field once, as :{tail} or field=")
            location, field_name = head, tail
        table = _table_format(location)
        if table is None and options:
            raise SourceError(f"source {spec!r}: options are for .jsonl, .parquet and hf: sources")
        if table is None and _GLOB_CHARS.search(location):
            raise SourceError(f"source {spec!r}: a glob must name .parquet or .jsonl[.gz|.zst|...] files")
        fmt = table or "text"
    if ("prompt" in options) != ("response" in options):
        raise SourceError(f"source {spec!r}: give prompt= and response= together")
    return Source(
        spec,
        fmt,
        location=location,
        field=field_name,
        config=options.get("config"),
        split=options.get("split", DEFAULT_SPLIT),
        revision=options.get("revision"),
        limit=_limit(spec, options.get("limit")),
        prompt=options.get("prompt"),
        response=options.get("response"),
    )


def _list_local(source: Source) -> list[str]:
    path = Path(source.location).expanduser()
    if _GLOB_CHARS.search(str(path)):
        matches = sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not matches:
            raise SourceError(f"source {source.spec!r}: no files match {source.location}")
        return matches
    if not path.exists() or path.is_dir():  # anything else that opens is a file (a FIFO too)
        raise SourceError(f"source {source.spec!r}: {path} does not exist")
    return [str(path)]


def _list_remote(source: Source) -> list[str]:
    try:
        fs, path = fsspec.core.url_to_fs(source.location)
        if _GLOB_CHARS.search(path):
            matches = sorted(fs.unstrip_protocol(p) for p in fs.glob(path) if fs.isfile(p))
            if not matches:
                raise SourceError(f"source {source.spec!r}: no files match {source.location}")
            return matches
        if not fs.isfile(path):
            raise SourceError(f"source {source.spec!r}: {source.location} does not exist")
        return [fs.unstrip_protocol(path)]
    except SourceError:
        raise
    except Exception as error:  # a filesystem's own errors: no credentials, no network, no such bucket
        raise SourceError(
            f"source {source.spec!r}: cannot list {source.location}: {_first_line(error)}"
        ) from error


def _list_files(source: Source) -> tuple[str, ...]:
    matches = _list_remote(source) if "://" in source.location else _list_local(source)
    wrong = [p for p in matches if not p.lower().endswith(_SUFFIXES[source.format])]
    if wrong:
        raise SourceError(f"source {source.spec!r}: {wrong[0]} is not a {source.format} file")
    return tuple(matches)


def resolve(source: Source) -> Source:
    """Check that what `source` names exists and list its files (`jsonl`, `parquet`); SourceError if not.

    A Hub dataset is not contacted here (its errors, e.g. no network or no such split, come when it is read).
    """
    if source.format in ("jsonl", "parquet"):
        return replace(source, files=_list_files(source))
    if source.format == "text":
        path = Path(source.location).expanduser()
        if not path.exists():
            raise SourceError(f"source {source.spec!r}: {path} does not exist")
        if path.is_file() and path.suffix not in PROSE_SUFFIXES | CODE_SUFFIXES | {".jsonl"}:
            raise SourceError(
                f"source {source.spec!r}: unsupported file type {path.suffix!r} (use .txt .md .rst .py, "
                ".jsonl[.gz|.zst|.bz2|.xz], .parquet or hf:NAME)"
            )
        return replace(source, location=str(path))
    if source.format == "hf":
        folder = Path(source.location).expanduser()
        if folder.exists():
            return replace(source, location=str(folder.resolve()))
        if not _HUB_ID.match(source.location):
            raise SourceError(
                f"source {source.spec!r}: {source.location} is neither a local folder nor a Hub id (ORG/NAME)"
            )
    return source


def parse_source(spec: str) -> Source:
    """`resolve(parse_spec(spec))`: the parsed spec, checked to exist, with its files listed."""
    return resolve(parse_spec(spec))


def source_listing(source: Source) -> list[Any]:
    """What identifies a source's content without reading it: file names, sizes and change stamps."""
    if source.format == "builtin":  # built from this Python's standard library
        return [source.spec, sys.version]
    if source.format in ("jsonl", "parquet") and "://" in source.location:
        listing: list[Any] = [source.spec]
        for url in source.files:
            fs, path = fsspec.core.url_to_fs(url)
            listing.append([url, fs.ukey(path)])  # the filesystem's own change stamp (ETag, mtime, ...)
        return listing
    path = Path(source.location)
    if source.format in ("jsonl", "parquet"):
        paths = [Path(file) for file in source.files]
    elif not path.exists():  # a Hub dataset: its spec (and revision) is all there is to know here
        return [source.spec]
    else:
        paths = sorted(path.rglob("*")) if path.is_dir() else [path]
    listing = [source.spec]
    for item in paths:
        if item.is_file():
            stat = item.stat()
            listing.append([str(item), stat.st_size, stat.st_mtime_ns])
    return listing


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


def _row_adapter(self: Any, data: dict[str, Any], path: str, id_in_file: int | str) -> dict[str, Any]:
    """datatrove adapter that carries the whole row: readers give Documents, we want the columns."""
    return {"text": "row", "id": f"{path}/{id_in_file}", "metadata": {"row": data}}


def _read_parquet(source: Source, file: str, columns: tuple[str, ...]) -> Iterator[Row]:
    fs, path = fsspec.core.url_to_fs(file)
    # ParquetReader reads only its `text_key` and `id_key` columns when read_metadata is False: name the
    # (one or two) columns the caller needs there, or no columns for all of them (read_metadata=True);
    # the adapter hands the row over as it is.
    reader = ParquetReader(
        (posixpath.dirname(path), fs),
        batch_size=READ_BATCH_ROWS,
        read_metadata=not columns,
        adapter=_row_adapter,
        text_key=columns[0] if columns else "text",
        id_key=columns[-1] if columns else "id",
    )
    reader.add_file_path = False
    try:
        for number, document in enumerate(reader.read_file(posixpath.basename(path)), start=1):
            yield Row(file, number, document.metadata["row"])
    except Exception as error:  # pyarrow's and the filesystem's errors: a corrupt or truncated file
        raise SourceError(
            f"source {source.spec!r}: cannot read {file} as parquet: {_first_line(error)}"
        ) from error


def _open_binary(file: str) -> BinaryIO:
    """`file` opened for reading, decompressed by fsspec's codec for its suffix (the inference datatrove's
    JsonlReader uses). Local files open with `open()`: fsspec's local opener seeks, which a FIFO cannot."""
    if "://" in file:
        handle: Any = fsspec.open(file, "rb").open()
    else:
        handle = open(file, "rb")  # noqa: SIM115 - closed by the caller's `with`
    compression = infer_compression(file)
    if compression is None:
        return cast(BinaryIO, handle)
    # zstandard's reader cannot iterate lines; a buffer over it (and over the others) can
    return io.BufferedReader(compr[compression](handle, mode="rb"))


def _read_jsonl(source: Source, file: str, stats: ReadStats) -> Iterator[Row]:
    try:
        with _open_binary(file) as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                text = decode(line, stats)
                if text is None:
                    yield Row(file, line_number, None, "undecodable")
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError:
                    record = None
                if isinstance(record, dict | list):
                    yield Row(file, line_number, record)
                else:
                    yield Row(file, line_number, None, "malformed")
    except Exception as error:  # the decompressor's errors: a corrupt or truncated .gz/.zst
        raise SourceError(f"source {source.spec!r}: cannot read {file}: {_first_line(error)}") from error


def _read_dataset(source: Source) -> Iterator[Row]:
    options: dict[str, Any] = {"split": source.split}
    if source.config:
        options["name"] = source.config
    if source.revision:
        options["revision"] = source.revision
    reader = HuggingFaceDatasetReader(
        source.location,
        dataset_options=options,
        streaming=True,
        batch_size=READ_BATCH_ROWS,
        adapter=_row_adapter,
    )
    try:
        for number, document in enumerate(reader.run(None, rank=0, world_size=1), start=1):
            yield Row(source.location, number, document.metadata["row"])
    except ConnectionError as error:
        raise SourceError(
            f"source {source.spec!r}: cannot reach the Hugging Face Hub for {source.location!r} (a Hub id "
            f"needs the network when it is read; no local folder has that name): {_first_line(error)}"
        ) from error
    except Exception as error:  # datasets' own errors: no such dataset, config or split
        raise SourceError(f"source {source.spec!r}: {_first_line(error)}") from error


def iter_rows(source: Source, stats: ReadStats, columns: tuple[str, ...] = ("text",)) -> Iterator[Row]:
    """The records of a table source (`jsonl`, `parquet`, `hf`) in a fixed order, file by file.

    `columns` are the one or two columns the caller needs: parquet reads only those (in READ_BATCH_ROWS
    batches), or every column when `columns` is empty; the other formats give whole records. `stats.files` counts the files opened, `stats.undecodable_bytes`
    the bytes dropped. Stops after `source.limit` rows. Raises SourceError for a corrupt file, an
    unreachable or missing dataset, split or config.
    """
    if source.format == "hf":
        rows: Iterator[Row] = _read_dataset(source)
        stats.files += 1
    elif source.format in ("jsonl", "parquet"):
        rows = _file_rows(source, stats, columns)
    else:
        raise ValueError(f"source {source.spec!r} is not a table source")
    for count, row in enumerate(rows):
        if source.limit is not None and count >= source.limit:
            break
        yield row


def _file_rows(source: Source, stats: ReadStats, columns: tuple[str, ...]) -> Iterator[Row]:
    for file in source.files:
        stats.files += 1
        if source.format == "parquet":
            yield from _read_parquet(source, file, columns)
        else:
            yield from _read_jsonl(source, file, stats)


def missing_columns(source: Source, names: tuple[str, ...], row: Row) -> SourceError:
    """The error for a parquet/dataset source whose rows lack a needed column (their schema is fixed)."""
    record = row.record if isinstance(row.record, dict) else {}
    have = ", ".join(sorted(record)) if record or source.format == "hf" else _parquet_columns(row.file)
    wanted = " or ".join(repr(name) for name in names)
    return SourceError(f"source {source.spec!r}: no column {wanted} in {row.file} (columns: {have})")


def _parquet_columns(file: str) -> str:
    import pyarrow.parquet as pq  # lazy: only this error message needs the schema

    fs, path = fsspec.core.url_to_fs(file)
    with fs.open(path, "rb") as handle:
        return ", ".join(pq.read_schema(handle).names)


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


def _text_rows(source: Source, stats: ReadStats) -> Iterator[tuple[str, Kind]]:
    column = source.text_field
    for row in iter_rows(source, stats, (column,)):
        if row.record is None:
            if row.problem == "malformed":
                stats.note_malformed(row.file, row.number)
            continue
        value = row.record.get(column) if isinstance(row.record, dict) else None
        if isinstance(value, str):
            yield value, "prose"
        elif source.format == "jsonl":
            stats.note_malformed(row.file, row.number)
        elif column not in row.record:
            raise missing_columns(source, (column,), row)
        else:
            stats.removed["not_text"] += 1


def _read_path(path: Path, field_name: str, stats: ReadStats) -> Iterator[tuple[str, Kind]]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if file.suffix == ".jsonl":
            for row in iter_rows(Source(str(file), "jsonl", files=(str(file),)), stats):
                if row.record is None:
                    if row.problem == "malformed":
                        stats.note_malformed(file, row.number)
                    continue
                value = row.record.get(field_name) if isinstance(row.record, dict) else None
                if isinstance(value, str):
                    yield value, "prose"
                else:
                    stats.note_malformed(file, row.number)
        elif file.suffix in PROSE_SUFFIXES | CODE_SUFFIXES:
            stats.files += 1
            content = decode(file.read_bytes(), stats)
            if content is not None:
                yield content, _kind_of(file)
        else:
            stats.skipped_files += 1


def read_source(
    source: Source,
    index: int,
    stats: ReadStats,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    part: int | None = None,
) -> Iterator[RawDocument]:
    """Documents of one source (or of part `part`, one read task's files), in a fixed order, stopping at
    `max_docs` / `max_bytes` (UTF-8).

    Built-in sources are capped at BUILTIN_MAX_BYTES unless `max_bytes` says otherwise.
    Document ids are `document_id(index, n, part)`, so sorting ids restores the reading order.
    """
    if max_bytes is None and source.builtin:
        max_bytes = BUILTIN_MAX_BYTES
    if source.format == "builtin":
        items = _read_builtin(source.spec, stats)
    elif source.format == "text":
        items = _read_path(Path(source.location), source.text_field, stats)
    else:
        items = _text_rows(source, stats)
    for text, kind in items:
        if not text.strip():
            stats.removed["empty"] += 1
            continue
        if max_docs is not None and stats.documents >= max_docs:
            break
        size = len(text.encode("utf-8"))
        if max_bytes is not None and stats.bytes + size > max_bytes and stats.documents > 0:
            break
        yield RawDocument(document_id(index, stats.documents, part), text, source.spec, kind)
        stats.documents += 1
        stats.bytes += size
