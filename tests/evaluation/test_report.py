"""Reading eval.json back: a file that is not a whole version-1 report is no report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.report import VERSION, read_report, report_for


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        json.dumps({"version": VERSION + 1}),
        json.dumps({"version": VERSION, "created": "2025-01-01T00:00:00+00:00"}),  # parts missing
        json.dumps({"version": VERSION, "quantization": {"rows": "no"}}),
    ],
)
def test_a_file_that_is_not_a_report_reads_as_none(tmp_path: Path, text: str) -> None:
    (tmp_path / "eval.json").write_text(text)
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    assert read_report(tmp_path / "eval.json") is None
    assert report_for(tmp_path / "model.gguf") == (None, None)


def test_no_file_is_no_report(tmp_path: Path) -> None:
    assert read_report(tmp_path / "eval.json") is None
