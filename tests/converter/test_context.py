"""The GGUF's context length is the trained seq_len from lineage.json, checked by verify's identity check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from converter.convert import convert
from converter.errors import ConversionError
from converter.gguf_info import read_gguf
from converter.verify import check_identity


def with_lineage(export_dir: Path, out: Path, **changes: object) -> Path:
    shutil.copytree(export_dir, out)
    lineage = json.loads((out / "lineage.json").read_text())
    (out / "lineage.json").write_text(json.dumps({**lineage, **changes}))
    return out


def test_context_length_is_the_trained_seq_len(export_dir: Path, tmp_path: Path) -> None:
    export = with_lineage(export_dir, tmp_path / "export", seq_len=48)
    info = read_gguf(convert(export, tmp_path / "m.gguf", "f32"))
    assert info.metadata["llama.context_length"] == 48  # max_seq_len is 128
    assert check_identity(info, export).passed
    # An export without seq_len (older lineage) keeps max_seq_len, and verify notices a mismatch.
    assert not check_identity(info, export_dir).passed
    assert check_identity(info, export_dir).details["mismatches"] == {
        "llama.context_length": {"gguf": 48, "export": 128}
    }


@pytest.mark.parametrize("seq_len", [0, 129, "64", True])
def test_bad_seq_len_is_refused(export_dir: Path, tmp_path: Path, seq_len: object) -> None:
    export = with_lineage(export_dir, tmp_path / "export", seq_len=seq_len)
    with pytest.raises(
        ConversionError, match=r"lineage.json: seq_len must be an integer from 1 to max_seq_len 128"
    ):
        convert(export, tmp_path / "m.gguf", "f32")
    assert not (tmp_path / "m.gguf").exists()
