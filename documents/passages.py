"""Turn what `chakor docs add` is given into passages: the unit the index stores and search returns.

A source is one of
- `local:python-docs`: the whole built-in documentation (every documented member of
  `documents.stdlib.DOC_MODULES`, one passage each, and pydoc's language-reference topics), not only
  the 2 MB slice that `chakor data prepare` trains on,
- a `chakor data prepare` output folder (it has `report.json`): one document per JSONL record,
- a folder: every `.txt .md .rst .py .jsonl` file below it,
- a `.txt .md .rst .py` file, or a `.jsonl` file with `text` (and optional `title`, `url`) per line.
Documents longer than PASSAGE_CHARS are cut at paragraph boundaries. Everything is streamed one file at a
time. Each passage belongs to one *file key* (a file, or the built-in corpus) so an index can replace
exactly the passages of a file that changed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from pydoc_data.topics import topics

from documents import stdlib

BUILTIN_DOCS = "local:python-docs"
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py"}
PREPARE_REPORT = "report.json"
# ~250 tokens of the quickstart's BPE: long enough to hold a docstring, short enough to show as a card.
PASSAGE_CHARS = 1000
# The snippet is what enters the prompt; 160 characters (~40 tokens of the quickstart's BPE) lets three
# results fit the quickstart model's 256-token context beside the system prompt, question and answer.
SNIPPET_CHARS = 160
TITLE_CHARS = 80


class DocumentSourceError(ValueError):
    """A path given to `chakor docs add` is missing, of an unsupported type, or unreadable."""


@dataclass(frozen=True)
class Passage:
    """One searchable unit: `title`, where it comes from (`url`), its full `text` and its `snippet`."""

    title: str
    url: str
    text: str
    snippet: str


UNDERLINE = re.compile(r"^[*=~^-]{3,}$")


def _is_heading(paragraph: str) -> bool:
    """A Markdown `#` heading or an underlined reST/pydoc title."""
    lines = [line.strip() for line in paragraph.strip().splitlines()]
    return lines[0].startswith("#") or any(UNDERLINE.match(line) for line in lines)


def snippet_of(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The first paragraph that is not a heading, on one line, cut at the last sentence (or word) end
    within `limit` characters."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    paragraph = next((p for p in paragraphs if not _is_heading(p)), paragraphs[0] if paragraphs else "")
    line = " ".join(paragraph.split())
    if len(line) <= limit:
        return line
    head = line[:limit]
    end = head.rfind(". ")
    if end >= limit // 2:
        return head[: end + 1]
    return head[: head.rfind(" ")].rstrip(" ,;:") + " …" if " " in head else head


def title_of(text: str, fallback: str) -> str:
    """The first non-empty line (without Markdown heading marks), at most TITLE_CHARS characters."""
    first = next((line.strip().lstrip("#").strip() for line in text.splitlines() if line.strip()), "")
    return (first or fallback)[:TITLE_CHARS]


def chunks(text: str, limit: int = PASSAGE_CHARS) -> Iterator[str]:
    """`text` in pieces of at most about `limit` characters, cut between paragraphs where possible."""
    current: list[str] = []
    size = 0
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        while len(paragraph) > limit:  # one very long paragraph: cut at a word boundary
            if current:
                yield "\n\n".join(current)
                current, size = [], 0
            cut = paragraph.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            yield paragraph[:cut]
            paragraph = paragraph[cut:].strip()
        if current and size + len(paragraph) > limit:
            yield "\n\n".join(current)
            current, size = [], 0
        current.append(paragraph)
        size += len(paragraph) + 2
    if current:
        yield "\n\n".join(current)


def _document(title: str, url: str, text: str) -> Iterator[Passage]:
    for n, piece in enumerate(chunks(text)):
        yield Passage(title if n == 0 else f"{title} ({n + 1})", url, piece, snippet_of(piece))


def builtin_passages() -> Iterator[Passage]:
    """Every documented member of the built-in modules, then pydoc's language-reference topics."""
    for module_name in stdlib.DOC_MODULES:
        module = stdlib.import_doc_module(module_name)
        if module is None:
            continue
        doc = inspect.getdoc(module)
        if doc:
            yield Passage(module_name, f"pydoc:{module_name}", doc[: PASSAGE_CHARS * 4], snippet_of(doc))
        for name, member in stdlib.public_members(module):
            member_doc = inspect.getdoc(member) or ""
            qualified = f"{module_name}.{name}"
            text = f"{stdlib.signature(qualified, member)}\n\n{member_doc}"
            yield Passage(qualified, f"pydoc:{qualified}", text[: PASSAGE_CHARS * 4], snippet_of(member_doc))
    for key in sorted(topics):
        yield from _document(f"Python reference: {key}", f"pydoc:topic/{key}", topics[key])


def builtin_fingerprint() -> str:
    """Changes when the built-in documentation can change: the Python version and the module list."""
    return hashlib.sha256(f"{sys.version}\n{stdlib.DOC_MODULES}".encode()).hexdigest()


def source_files(path: Path) -> list[Path]:
    """The files a path stands for (sorted); raises DocumentSourceError for what cannot be indexed."""
    if not path.exists():
        raise DocumentSourceError(f"{path} does not exist")
    if path.is_file():
        if path.suffix not in TEXT_SUFFIXES | {".jsonl"}:
            raise DocumentSourceError(
                f"{path}: unsupported file type {path.suffix!r} (use .txt .md .rst .py .jsonl)"
            )
        return [path]
    if (path / PREPARE_REPORT).is_file():
        return sorted(path.glob("docs-*.jsonl"))
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES | {".jsonl"})


def file_passages(path: Path) -> Iterator[Passage]:
    """The passages of one file (undecodable bytes are replaced; malformed JSONL lines are skipped)."""
    if path.suffix != ".jsonl":
        text = path.read_bytes().decode("utf-8", errors="replace")
        yield from _document(
            title_of(text, path.name) if path.suffix == ".md" else path.name, str(path), text
        )
        return
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                record = json.loads(raw.decode("utf-8", errors="replace"))
            except json.JSONDecodeError:
                continue
            body = record.get("text") if isinstance(record, dict) else None
            if not isinstance(body, str) or not body.strip():
                continue
            title = record.get("title")
            url = record.get("url")
            anchor = record.get("id", line_number)
            yield from _document(
                str(title)[:TITLE_CHARS] if title else title_of(body, f"{path.name} #{line_number}"),
                str(url) if url else f"{path}#{anchor}",
                body,
            )
