"""lm-evaluation-harness on `chakor export --format hf`, as the README documents it: a local task, no Hub access."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from converter.reference import Reference
from evaluation import scoring, tasks
from tests.support import benchmark_rows as rows
from tests.support.tiny_model import TinyModel
from trainer.export import export_state_dict, read_config
from trainer.model import Transformer

pytestmark = pytest.mark.slow
# A task of lm-eval's own YAML schema over a local JSONL in PIQA's schema, with lm-eval's piqa prompt
TASK_YAML = """task: chakor_piqa
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {data}
validation_split: validation
output_type: multiple_choice
doc_to_text: "Question: {{{{goal}}}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{{{[sol1, sol2]}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def test_lm_eval_scores_the_hf_export_as_our_scorer_does(tiny_model: TinyModel, tmp_path: Path) -> None:
    cfg = read_config(tiny_model.export_dir)
    torch.manual_seed(0)
    export = export_state_dict(
        Transformer(cfg).state_dict(),
        cfg,
        tiny_model.tokenizer_dir,
        tmp_path / "export",
        {"source": "test"},
        hf=True,
    )
    data = rows.write_jsonl(tmp_path / "piqa.jsonl", rows.piqa_rows(12))
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "chakor_piqa.yaml").write_text(TASK_YAML.format(data=data))
    out = tmp_path / "lm-eval"
    argv = [
        sys.executable, "-m", "lm_eval", "--model", "hf",
        "--model_args", f"pretrained={export / 'hf'},dtype=float32,add_bos_token=True",
        "--tasks", "chakor_piqa", "--include_path", str(task_dir), "--device", "cpu", "--batch_size", "8",
        "--output_path", str(out), "--log_samples",
    ]  # fmt: skip
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **offline}, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    (results,) = out.rglob("results_*.json")
    (samples,) = out.rglob("samples_chakor_piqa_*.jsonl")
    found = json.loads(results.read_text())["results"]["chakor_piqa"]
    ours = scoring.score_items(Reference(export), tasks.load_items("piqa", str(data)), max_len=2048)
    assert found["acc,none"] == sum(s.correct("sum") for s in ours) / len(ours)
    assert found["acc_norm,none"] == sum(s.correct("chars") for s in ours) / len(ours)
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(lines) == len(ours) == 12
    for line in lines:  # the same prompt, the same log-likelihoods (float32 forward passes)
        scored = ours[line["doc_id"]]
        assert line["arguments"]["gen_args_0"]["arg_0"] == scored.item.contexts[0]
        assert [float(r[0][0]) for r in line["resps"]] == pytest.approx(scored.loglik, abs=1e-4)
