"""A second `chakor quickstart` with every stage up to date runs nothing, then writes manifest.json and prints
its summary (the README: "a second run: every stage cached, straight to `chakor up`").

The stage outputs are laid out as a first run leaves them, the model files made by our converter from the
tiny test model, and each stage's stamp is its real fingerprint, so the cache decides exactly as after a run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from chakor.quickstart import fingerprint, model_stages, stages
from converter.convert import convert
from tests.support.tiny_model import TinyModel
from trainer.configs import ModelConfig

QUANTS = ("f32", "f16", "q8_0")  # the tiny model is too narrow for q4_k_m
STAGES = ["data", "tokenizer", "shards", "sft-data", "docs", "pretrain", "sft", "export"]


def lay_out_a_finished_run(root: Path, tiny_model: TinyModel) -> None:
    for folder in ("data", "sft-data", "pretrain", "sft", "shards"):
        (root / folder).mkdir(parents=True)
    (root / "data" / "clean-00000.jsonl").write_text('{"text": "def f(): pass"}\n')
    (root / "sft-data" / "sft.jsonl").write_text('{"messages": []}\n')
    (root / "docs-index.json").write_text("{}\n")
    splits = {"train": {"tokens": 1_195_964, "documents": 310}, "val": {"tokens": 14_784, "documents": 14}}
    (root / "shards" / "manifest.json").write_text(json.dumps({"splits": splits}))
    for run, (loss, val) in {"pretrain": (3.25, 3.5), "sft": (1.5, 2.0)}.items():
        lines = [{"step": 1, "loss": 9.0}, {"step": 1, "val_loss": 9.1}, {"step": 2, "loss": loss}]
        lines.append({"step": 2, "val_loss": val})
        (root / run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    shutil.copytree(tiny_model.tokenizer_dir, root / "tokenizer")
    shutil.copytree(tiny_model.export_dir, root / "export")
    for quant in QUANTS:
        convert(root / "export", root / f"model-{quant}.gguf", quant)
    stamps = root / ".stamps"
    stamps.mkdir()
    for stage in [*stages(root), *model_stages(root, QUANTS)]:
        (stamps / f"{stage.name}.sha256").write_text(fingerprint(stage))


def test_a_second_run_with_every_stage_cached_writes_the_manifest_and_summary(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    root = tmp_path / "runs" / "quickstart"
    lay_out_a_finished_run(root, tiny_model)
    env = {
        **os.environ,
        "COLUMNS": "200",
        "CHAKOR_RUNS_DIR": str(tmp_path / "runs"),
        "CHAKOR_VAR_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "chakor", "quickstart", "--skip-verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in [*STAGES, *(f"convert-{quant}" for quant in QUANTS)]:
        assert f"↷ {name}: up to date" in out
    assert json.loads((root / "manifest.json").read_text()) == {
        "tokenizer_json": str(root / "tokenizer" / "tokenizer.json"),
        "export_dir": str(root / "export"),
        "gguf": {quant: str(root / f"model-{quant}.gguf") for quant in QUANTS},
        "verify_report": str(root / "verify.json"),
        "eval_report": str(root / "eval.json"),
        "served": "f32",  # no eval report (verify and eval skipped): the exact model
        "stage_seconds": dict.fromkeys([*STAGES, *(f"convert-{quant}" for quant in QUANTS)]),
    }
    lines = [" ".join(line.strip("│┃ ").replace("│", " ").split()) for line in out.splitlines()]
    assert [line for line in lines if line.endswith(" cached")] == [
        f"{name} cached" for name in [*STAGES, *(f"convert-{quant}" for quant in QUANTS)]
    ]
    params = ModelConfig.from_dict(json.loads((root / "export" / "config.json").read_text())).num_params()
    assert "training tokens 1,195,964 train / 14,784 val" in lines
    assert f"parameters {params:,}" in lines
    assert "pretrain loss train 3.250 / val 3.500 (perplexity 33.1)" in lines
    assert "sft loss train 1.500 / val 2.000 (perplexity 7.4)" in lines
    assert "served GGUF f32" in lines
