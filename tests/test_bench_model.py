"""The model the inference benchmark measures: what `chakor up` would serve, or a stand-in it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.stack import served_model
from tests.support.tiny_model import TinyModel


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHAKOR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("CHAKOR_MODEL_PATH", raising=False)
    monkeypatch.delenv("CHAKOR_TOKENIZER_PATH", raising=False)
    return tmp_path / "runs"


def stand_in(tmp_path: Path) -> TinyModel:
    """Only the stand-in's paths are read: no model needs to be built."""
    return TinyModel(tokenizer_dir=tmp_path / "tok", export_dir=tmp_path, gguf_path=tmp_path / "tiny.gguf")


def quickstart(runs: Path, served: str) -> Path:
    """A finished quickstart's files: the manifest, its GGUFs and the tokenizer."""
    root = runs / "quickstart"
    (root / "tokenizer").mkdir(parents=True)
    (root / "tokenizer" / "tokenizer.json").write_text("{}")
    gguf = {quant: str(root / f"model-{quant}.gguf") for quant in ("f32", "f16", "q8_0")}
    for path in gguf.values():
        Path(path).write_bytes(b"GGUF")
    (root / "manifest.json").write_text(json.dumps({"gguf": gguf, "served": served}))
    return root


def test_the_quickstart_manifests_served_gguf_is_measured(runs: Path, tmp_path: Path) -> None:
    root = quickstart(runs, "f16")
    gguf, tokenizer, description = served_model(stand_in(tmp_path))
    assert (gguf, tokenizer) == (root / "model-f16.gguf", root / "tokenizer")
    assert description == f"served model model-f16.gguf (from {root / 'manifest.json'})"


def test_without_a_quickstart_the_stand_in_is_named_as_such(runs: Path, tmp_path: Path) -> None:
    model = stand_in(tmp_path)
    gguf, tokenizer, description = served_model(model)
    assert (gguf, tokenizer) == (model.gguf_path, model.tokenizer_dir)
    assert description == (
        "STAND-IN, not the served model: tests' 2-layer random-init f32 model "
        f"(no {runs / 'quickstart' / 'manifest.json'})"
    )


def test_a_served_gguf_that_is_gone_falls_back_and_says_why(runs: Path, tmp_path: Path) -> None:
    root = quickstart(runs, "q8_0")
    (root / "model-q8_0.gguf").unlink()
    _, _, description = served_model(stand_in(tmp_path))
    assert description == (
        "STAND-IN, not the served model: tests' 2-layer random-init f32 model "
        f"({root / 'model-q8_0.gguf'} (from {root / 'manifest.json'}) does not exist)"
    )
