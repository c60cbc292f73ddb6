"""`prepare`: planted duplicates and junk are removed with exact per-reason counts, good text is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data.corpus import GOOD_CODE, good_doc
from trainer.data.filters import clean_text
from trainer.data.prepare import PrepareConfig, iter_documents, prepare
from trainer.data.sources import SourceError, document_id


def test_removals_are_counted_per_step_and_reason(prepared: Path) -> None:
    report = json.loads((prepared / "report.json").read_text())
    assert report["removed"] == {
        "read": {"malformed_jsonl_line": 3, "undecodable": 1},
        "min length": {"too_short": 1},
        "gopher quality (prose)": {"gopher_short_doc": 1},
        "gopher repetition (prose)": {"dup_line_frac": 1},
        "code quality": {"code_long_line": 1},
        "dedup": {"exact_duplicate": 1, "near_duplicate": 2},
    }
    assert report["documents"] == 10
    docs_source, jsonl_source = report["sources"].values()
    assert (docs_source["read_docs"], docs_source["kept_docs"], docs_source["skipped_files"]) == (15, 8, 1)
    assert docs_source["undecodable_bytes"] == 3 + 512
    assert (jsonl_source["kept_docs"], jsonl_source["weight"]) == (2, 2.0)
    assert list(jsonl_source["malformed_lines"].values()) == [[3, 5, 6]]


def test_distinct_documents_are_kept_verbatim(prepared: Path) -> None:
    texts = {doc["text"] for doc in iter_documents(prepared)}
    expected = {good_doc(i) for i in (0, 1, 3, 4, 5, 6, 7, 100)} | {clean_text(GOOD_CODE)}
    assert expected <= texts
    # the exact duplicate read first (exact2.rst sorts before good2.txt) is the copy kept
    assert clean_text("  " + good_doc(2).replace(" ", "   ")) in texts
    assert len(texts) == 10
    kinds = sorted(doc["kind"] for doc in iter_documents(prepared))
    assert kinds == ["code"] + ["prose"] * 9


def test_two_workers_write_what_one_writes(corpus_sources: list[str], tmp_path: Path) -> None:
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        config = PrepareConfig(sources=corpus_sources, out_dir=out, seed=7, workers=workers, tasks=2)
        prepare(config)
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0] == outputs[1]
    assert sorted(outputs[0]) == ["docs-00000.jsonl", "docs-00001.jsonl", "report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["workers1", "workers2"]  # no work folder left


def test_document_ids_sort_as_numbers() -> None:
    ids = [document_id(source, n) for source in (0, 3, 12) for n in (0, 9, 10, 10_000_001, 10**12 - 1)]
    assert sorted(ids) == ids
    assert document_id(3, 10_000_001) == "0003-000010000001"
    with pytest.raises(ValueError, match="out of the id range"):
        document_id(0, 10**12)


@pytest.mark.parametrize(
    ("sources", "weights", "message"),
    [
        (["missing-dir"], {}, "source 'missing-dir': missing-dir does not exist"),
        (["local:nope"], {}, "unknown built-in source 'local:nope'"),
        (["local:python-docs"], {"local:python-code": 2.0}, "--weight names 'local:python-code'"),
        ([], {}, "no --source given"),
    ],
)
def test_bad_sources_fail_before_writing(
    tmp_path: Path, sources: list[str], weights: dict[str, float], message: str
) -> None:
    with pytest.raises(SourceError, match=message):
        prepare(PrepareConfig(sources=sources, out_dir=tmp_path / "out", weights=weights))
    assert list(tmp_path.iterdir()) == []


def test_empty_source_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("   \n")
    with pytest.raises(SourceError, match=r"has no documents \(read 1 files; 1 empty\)"):
        prepare(PrepareConfig(sources=[str(tmp_path / "empty")], out_dir=tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path, corpus_sources: list[str]) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not a `chakor data prepare` output"):
        prepare(PrepareConfig(sources=corpus_sources, out_dir=tmp_path / "out"))
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_everything_filtered_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "junk.txt").write_text("$$$ ### %%% " * 50)
    with pytest.raises(ValueError, match="all 1 documents read were removed by the filters"):
        prepare(PrepareConfig(sources=[str(tmp_path / "src")], out_dir=tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
