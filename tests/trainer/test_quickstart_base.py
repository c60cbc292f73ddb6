"""The quickstart's last step: the pretrained base is exported, converted and evaluated beside the fine-tuned
model, and both are registered for `chakor up` (once: a rerun with nothing changed registers nothing)."""

from __future__ import annotations

import shutil
from pathlib import Path

from chakor.quickstart import BASE_MODEL, QUICKSTART_MODEL, serve_base_beside
from common.model_registry import load_registry, registry_path
from common.settings import load_settings


def test_the_base_is_made_with_its_card_and_both_models_are_registered(
    pretrain_run: Path, data_dir: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "runs" / "quickstart"
    shutil.copytree(pretrain_run, root / "pretrain")
    shutil.copytree(data_dir, root / "shards")
    shutil.copytree(tokenizer_dir, root / "tokenizer")
    settings = load_settings(runs_dir=tmp_path / "runs", var_dir=tmp_path / "var", llama_port=9100)
    base = root / "base" / "model-f32.gguf"
    # the base stands in for the fine-tuned GGUF here: any GGUF of this tokenizer is registered alike
    serve_base_beside(settings, root, base, skip_verify=False)
    assert (root / "base" / "eval.json").is_file() and (root / "base" / "eval.md").is_file()
    path = registry_path(settings.var_dir)
    registry = load_registry(path)
    assert registry.default == QUICKSTART_MODEL
    assert [(m.name, m.kind, m.port) for m in registry.models] == [
        (QUICKSTART_MODEL, "chat", 9100),
        (BASE_MODEL, "base", 9101),
    ]
    entry = registry.get(BASE_MODEL)
    assert entry is not None and entry.eval_report == str(root / "base" / "eval.json")
    assert entry.tokenizer == str(root / "tokenizer")
    before = path.read_text()
    serve_base_beside(settings, root, base, skip_verify=False)  # every stage cached, nothing re-registered
    assert path.read_text() == before
