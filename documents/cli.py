"""`chakor docs add|list|remove|reindex|search`: manage the offline document-search index."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from common.cli import console, settings_or_exit, user_errors
from documents.index import Change, DocumentIndex, DocumentIndexError
from documents.passages import BUILTIN_DOCS, DocumentSourceError

docs_app = typer.Typer(
    help="Offline document search: the folders and JSONL files chat answers from (DOCUMENTS search).",
    no_args_is_help=True,
)
# Bad input or a busy index: one red line and exit status 2, nothing changed.
clear_errors = user_errors(DocumentIndexError, DocumentSourceError, OSError)


def register(app: typer.Typer) -> None:
    app.add_typer(docs_app, name="docs")


def _index() -> DocumentIndex:
    return DocumentIndex(settings_or_exit().docs_index_dir)


def _print_changes(changes: list[Change]) -> None:
    table = Table(
        "collection", "added", "updated", "removed", "unchanged", "passages", title="document index"
    )
    for c in changes:
        table.add_row(
            c.name, *(str(n) for n in (c.added_files, c.updated_files, c.removed_files, c.unchanged_files)),
            str(c.passages),
        )  # fmt: skip
    console.print(table)


@docs_app.command()
@clear_errors
def add(
    path: str = typer.Argument(..., help=f"a folder, a .jsonl/.md/.txt/.rst/.py file, or {BUILTIN_DOCS}"),
    name: str | None = typer.Option(None, help="collection name (default: the absolute path)"),
    report: Path | None = typer.Option(None, help="also write what changed to this JSON file"),
) -> None:
    """Index a folder or file (again: only files that changed are re-read)."""
    change = _index().add(path, name)
    _print_changes([change])
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(asdict(change), indent=2) + "\n", encoding="utf-8")


@docs_app.command("list")
@clear_errors
def list_() -> None:
    """The indexed collections."""
    index = _index()
    table = Table("collection", "source", "files", "passages", title=f"document index at {index.path}")
    for c in index.collections():
        table.add_row(c.name, c.source, str(c.files), str(c.passages))
    console.print(table)


@docs_app.command()
@clear_errors
def remove(name: str = typer.Argument(..., help="a collection name from `chakor docs list`")) -> None:
    """Drop a collection from the index."""
    passages = _index().remove(name)
    console.print(f"removed {name} ({passages} passages)")


@docs_app.command()
@clear_errors
def reindex(name: str | None = typer.Argument(None, help="one collection (default: all)")) -> None:
    """Re-read changed files and drop deleted ones."""
    _print_changes(_index().reindex(name))


@docs_app.command()
@clear_errors
def search(
    query: str = typer.Argument(...), limit: int = typer.Option(5, min=1, max=50, help="results")
) -> None:
    """Search the index from the shell (what DOCUMENTS search in chat will find)."""
    table = Table("#", "score", "title", "source", "snippet", title=f"results for {query!r}")
    for n, hit in enumerate(_index().search(query, limit), start=1):
        table.add_row(str(n), f"{hit.score:.2f}", hit.title, hit.url, hit.content)
    console.print(table)
