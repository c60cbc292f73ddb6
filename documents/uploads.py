"""A file a user uploads, as passages: its type decided from its bytes (and its name), its text extracted.

Accepted: plain text and Markdown (UTF-8, or UTF-16 with a byte-order mark), HTML (text only: scripts,
styles and other non-content elements dropped; lxml's parser, which survives broken markup) and PDF
(its text layer, with pypdf). Anything else is refused with `UnsupportedDocument`, whose message names
the file and why: binaries (whatever their name says), images, encrypted PDFs, PDFs without text.
The type comes from the content first: a `.txt` holding a PDF is read as a PDF, a `.txt` holding
binary bytes is refused; the name only tells Markdown from plain text and HTML from text when the
content could be either.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath

import lxml.html
from lxml import etree
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from documents.passages import TITLE_CHARS, Passage, chunks, snippet_of, title_of

MAX_NAME_CHARS = 200
TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ""}
MARKDOWN_SUFFIXES = {".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
HTML_START = re.compile(rb"^\s*(<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])", re.IGNORECASE)
# Magic numbers of formats people upload by mistake, for a refusal that says what the file is.
IMAGES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image"}
ARCHIVES = {b"PK\x03\x04": "a ZIP archive (DOCX and other Office files are not supported)"}
NON_CONTENT = ("script", "style", "noscript", "template", "head")
# A text file has hardly any control characters besides tab, CR, LF and FF; 1 in 100 allows a few stray
# ones (a form feed, an escape sequence in a log) and refuses binary data, which has them everywhere.
MAX_CONTROL_RATIO = 0.01
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


class UnsupportedDocument(ValueError):
    """A file that cannot be indexed; the message names the file and the reason."""


@dataclass(frozen=True)
class Extracted:
    """What a file holds: its `kind` (text, markdown, html, pdf), a title and its text."""

    kind: str
    title: str
    text: str


def clean_name(name: str) -> str:
    """The file's own name (no folders a client put in front), one line, at most MAX_NAME_CHARS."""
    base = PurePath(name.replace("\\", "/")).name
    base = " ".join(CONTROL.sub("", base).split())
    return base[:MAX_NAME_CHARS] or "document"


def _decode_text(name: str, data: bytes) -> str:
    """`data` as text, or UnsupportedDocument when it is not (undecodable, or control characters)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise UnsupportedDocument(f"{name}: not a text file (invalid UTF-16)") from None
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UnsupportedDocument(
                f"{name}: binary content, not a text, Markdown, HTML or PDF file"
            ) from None
    if "\x00" in text or len(CONTROL.findall(text)) > MAX_CONTROL_RATIO * max(len(text), 1):
        raise UnsupportedDocument(f"{name}: binary content, not a text, Markdown, HTML or PDF file")
    return text


def _html_text(name: str, data: bytes) -> tuple[str, str]:
    """The title and the visible text of an HTML page, paragraphs separated by blank lines."""
    try:
        root = lxml.html.document_fromstring(data)
    except (etree.ParserError, ValueError):
        raise UnsupportedDocument(f"{name}: the HTML cannot be parsed") from None
    title = root.findtext(".//title") or ""
    for element in list(root.iter(*NON_CONTENT)):  # a list: dropping while iterating skips elements
        element.drop_tree()
    for block in root.iter("p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "br", "pre"):
        block.tail = "\n\n" + (block.tail or "")
    paragraphs = (" ".join(p.split()) for p in root.text_content().split("\n\n"))
    return " ".join(title.split()), "\n\n".join(p for p in paragraphs if p)


def _pdf_text(name: str, data: bytes) -> str:
    """The text layer of every page, a blank line between pages."""
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
        pages = [] if encrypted else [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise UnsupportedDocument(f"{name}: the PDF cannot be read ({type(exc).__name__})") from None
    if encrypted:
        raise UnsupportedDocument(f"{name}: the PDF is encrypted")
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise UnsupportedDocument(f"{name}: the PDF has no text layer (a scan?); it cannot be searched")
    return text


def extract(name: str, data: bytes) -> Extracted:
    """The kind, title and text of an uploaded file `name` (already `clean_name`d) holding `data`."""
    suffix = PurePath(name).suffix.lower()
    for magic, what in (IMAGES | ARCHIVES).items():
        if data.startswith(magic):
            raise UnsupportedDocument(f"{name}: {what}, not a text, Markdown, HTML or PDF file")
    if data.lstrip()[:5] == b"%PDF-":
        return Extracted("pdf", PurePath(name).stem[:TITLE_CHARS], _pdf_text(name, data))
    if suffix not in TEXT_SUFFIXES:
        raise UnsupportedDocument(f"{name}: unsupported file type {suffix!r} (use .txt .md .html or .pdf)")
    text = _decode_text(name, data)
    if suffix in HTML_SUFFIXES or HTML_START.match(data.lstrip(b"\xef\xbb\xbf")):
        title, body = _html_text(name, text.encode("utf-8"))
        return Extracted("html", (title or name)[:TITLE_CHARS], body)
    if suffix in MARKDOWN_SUFFIXES:
        return Extracted("markdown", title_of(text, name), text)
    return Extracted("text", name[:TITLE_CHARS], text)


def passages_of(extracted: Extracted, url: str, max_passages: int) -> Iterator[Passage]:
    """The document's passages (`url`: where a source card says it comes from); UnsupportedDocument
    as soon as there would be more than `max_passages`, before any work past that point."""
    if not extracted.text.strip():
        raise UnsupportedDocument(f"{url}: the file holds no text")
    for n, piece in enumerate(chunks(extracted.text)):
        if n >= max_passages:
            raise UnsupportedDocument(
                f"{url}: more than {max_passages} passages (CHAKOR_MAX_PASSAGES_PER_DOCUMENT); split it"
            )
        title = extracted.title if n == 0 else f"{extracted.title} ({n + 1})"
        yield Passage(title, url, piece, snippet_of(piece))
