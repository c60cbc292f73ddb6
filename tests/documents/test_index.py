"""The document index: incremental on disk, survives a restart, safe queries, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tantivy

from documents.index import SITE, DocumentIndex, DocumentIndexError
from documents.passages import DocumentSourceError, Passage, snippet_of

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    _write(root / "ship.md", "# Starship\n\nThe starship Zorblax runs on quark fuel.")
    _write(root / "sub" / "tea.txt", "Oolong tea is brewed at 90 degrees.")
    _write(
        root / "faq.jsonl", json.dumps({"title": "Moon base", "text": "The moon base opens at dawn."}) + "\n"
    )
    _write(root / "image.png", "not text")  # ignored: not a text suffix
    return root


def test_index_is_incremental_and_survives_a_restart(tmp_path: Path, folder: Path) -> None:
    index = DocumentIndex(tmp_path / "index")
    first = index.add(str(folder), name="notes")
    assert (first.added_files, first.updated_files, first.unchanged_files, first.passages) == (3, 0, 0, 3)

    _write(folder / "sub" / "tea.txt", "Green tea is brewed at 80 degrees.")
    _write(folder / "new.rst", "The observatory telescope has a 2 metre mirror.")
    (folder / "faq.jsonl").unlink()

    restarted = DocumentIndex(tmp_path / "index")  # a new process would open the folder like this
    assert [(c.name, c.files, c.passages) for c in restarted.collections()] == [("notes", 3, 3)]
    change = restarted.reindex("notes")[0]
    assert (change.added_files, change.updated_files, change.removed_files, change.unchanged_files) == (
        1,
        1,
        1,
        1,
    )
    assert change.passages == 3

    assert restarted.search("oolong") == []
    assert restarted.search("moon base dawn") == []
    [tea] = restarted.search("green tea degrees", 1)
    assert (tea.title, tea.url, tea.content) == (
        "tea.txt",
        str(folder / "sub" / "tea.txt"),
        "Green tea is brewed at 80 degrees.",
    )
    [ship] = restarted.search("Zorblax", 5)
    assert (ship.title, ship.content, ship.collection) == (
        "Starship",
        "The starship Zorblax runs on quark fuel.",
        "notes",
    )
    assert restarted.search("telescope mirror", 1)[0].title == "new.rst"

    again = restarted.add(str(folder), name="notes")  # nothing changed: nothing is rewritten
    assert (again.added_files, again.updated_files, again.unchanged_files) == (0, 0, 3)

    assert restarted.remove("notes") == 3
    assert restarted.collections() == []
    assert restarted.search("Zorblax") == []


def test_builtin_documentation_is_indexed_whole(tmp_path: Path) -> None:
    index = DocumentIndex(tmp_path / "index")
    change = index.add("local:python-docs")
    assert change.passages > 1400  # every documented member of 66 modules plus the reference topics
    top = index.search("What does json.dumps do?", 3)[0]
    assert (top.title, top.url, top.content) == (
        "json.dumps",
        "pydoc:json.dumps",
        "Serialize ``obj`` to a JSON formatted ``str``.",
    )
    # zipfile and zlib come last in the module list: past the 2 MB that data prepare trains on.
    assert index.search("zlib.compress", 1)[0].title == "zlib.compress"


def test_a_prepare_output_is_indexed_per_document(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    _write(out / "report.json", "{}")
    records = [{"id": "00-0000000", "text": "Quokkas live on Rottnest.", "source": "x", "kind": "prose"}]
    _write(out / "docs-00000.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    index = DocumentIndex(tmp_path / "index")
    index.add(str(out))
    [hit] = index.search("quokkas", 5)
    assert (hit.title, hit.url) == ("Quokkas live on Rottnest.", f"{out / 'docs-00000.jsonl'}#00-0000000")


def test_query_syntax_cannot_break_a_search(tmp_path: Path, folder: Path) -> None:
    index = DocumentIndex(tmp_path / "index")
    index.add(str(folder))
    assert index.search('title:"x AND (OR NOT ~2 *') == []
    assert index.search("?!.") == []
    assert index.search("TEA AND degrees")[0].title == "tea.txt"


def test_bad_input_is_refused_and_changes_nothing(tmp_path: Path, folder: Path) -> None:
    index = DocumentIndex(tmp_path / "index")
    with pytest.raises(DocumentIndexError, match=r"^no document index at .* `chakor docs add PATH`"):
        index.search("tea")
    with pytest.raises(DocumentSourceError, match=r"does not exist$"):
        index.add(str(tmp_path / "missing"))
    with pytest.raises(DocumentSourceError, match=r"unsupported file type '\.png'"):
        index.add(str(folder / "image.png"))
    index.add(str(folder), name="notes")
    with pytest.raises(DocumentIndexError, match=r"^a collection named 'notes' already holds"):
        index.add(str(folder / "sub"), name="notes")
    with pytest.raises(DocumentIndexError, match=r"^no collection named 'nope'"):
        index.remove("nope")
    assert [(c.name, c.passages) for c in index.collections()] == [("notes", 3)]


def test_snippets_skip_headings_and_cut_at_a_sentence() -> None:
    assert snippet_of("Title\n*****\n\nFirst line\nwraps here.\n\nSecond.") == "First line wraps here."
    long = "One sentence here. " * 20
    assert snippet_of(long, 60) == "One sentence here. One sentence here. One sentence here."


def test_cli_add_list_search_remove(tmp_path: Path, folder: Path) -> None:
    env = {**os.environ, "CHAKOR_VAR_DIR": str(tmp_path / "var")}

    def chakor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chakor", "docs", *args], cwd=REPO, env=env, capture_output=True, text=True
        )

    report = tmp_path / "added.json"
    assert chakor("add", str(folder), "--name", "notes", "--report", str(report)).returncode == 0
    assert json.loads(report.read_text()) == {
        "name": "notes", "added_files": 3, "updated_files": 0, "removed_files": 0, "unchanged_files": 0, "passages": 3,
    }  # fmt: skip
    listed = chakor("list")
    assert "notes" in listed.stdout and str(tmp_path / "var" / "docs-index") in listed.stdout.replace(
        "\n", ""
    )
    assert "Zorblax" in chakor("search", "quark fuel").stdout
    bad = chakor("add", str(tmp_path / "nothing-here"))
    said = "".join(bad.stdout.split())  # rich wraps long paths
    assert (bad.returncode, said) == (2, f"error:{tmp_path / 'nothing-here'}doesnotexist")
    assert chakor("remove", "notes").stdout.strip() == "removed notes (3 passages)"


def test_indexing_and_searching_need_no_network(
    tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    index = DocumentIndex(tmp_path / "index")
    index.add("local:python-docs")
    index.add(str(folder))
    assert index.search("What does json.dumps do?", 1)[0].title == "json.dumps"
    assert index.search("quark fuel", 1)[0].title == "Starship"


def test_an_index_made_before_owners_is_rebuilt_by_reindex(tmp_path: Path, folder: Path) -> None:
    index = DocumentIndex(tmp_path / "index")
    index.add(str(folder), name="notes")
    # The same folder as an older Chakor left it: the schema without `owner`.
    old = tantivy.SchemaBuilder()
    for field in ("key", "collection", "url", "snippet"):
        old.add_text_field(field, stored=True, tokenizer_name="raw")
    old.add_text_field("title", stored=True)
    old.add_text_field("body", stored=False, tokenizer_name="en_stem")
    for entry in (tmp_path / "index").iterdir():
        if entry.name != "collections.json":
            entry.unlink()
    writer = tantivy.Index(old.build(), path=str(tmp_path / "index")).writer(heap_size=15_000_000)
    writer.add_document(tantivy.Document(key="k", collection="notes", title="Old", body="oolong"))
    writer.commit()
    writer.wait_merging_threads()

    with pytest.raises(DocumentIndexError, match=r"made by an older Chakor .* `chakor docs reindex`$"):
        DocumentIndex(tmp_path / "index").search("oolong")
    [change] = DocumentIndex(tmp_path / "index").reindex()
    assert (change.name, change.added_files, change.passages) == ("notes", 3, 3)
    [tea] = DocumentIndex(tmp_path / "index").search("oolong tea", 1)
    assert (tea.title, tea.collection) == ("tea.txt", "notes")


def test_owned_passages_are_seen_only_by_their_owner(tmp_path: Path, folder: Path) -> None:
    index = DocumentIndex(tmp_path / "index")
    index.add(str(folder), name="notes")
    alice, bob = "a" * 24, "b" * 24
    passage = Passage(
        "Alice tea", "alice.txt", "Alice brews oolong tea cold.", "Alice brews oolong tea cold."
    )
    assert index.add_owned(alice, "mine", "doc1", [passage]) == 1
    assert [h.title for h in index.search("oolong tea", 5, owners=(SITE, alice))] == ["Alice tea", "tea.txt"]
    assert [h.title for h in index.search("oolong tea", 5, owners=(SITE, bob))] == ["tea.txt"]
    assert [h.title for h in index.search("oolong tea", 5)] == ["tea.txt"]  # the site's alone by default
    assert [h.title for h in index.search("oolong", 5, (SITE, alice), ["mine"])] == ["Alice tea"]
    assert index.count_owned(alice) == 1
    index.delete_owned(["doc1"])
    assert index.count_owned(alice) == 0 and index.search("alice", 5, owners=(alice,)) == []
