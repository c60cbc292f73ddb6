"""`--resume` refuses data other than the run's own (its manifest hash is in run.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.configs import ModelConfig
from trainer.train import prepare_run

from .conftest import write_shards


def test_resume_refuses_other_data(
    tmp_path: Path, data_dir: Path, tokenizer_dir: Path, micro_cfg: ModelConfig
) -> None:
    run = prepare_run(tmp_path / "run", data_dir, micro_cfg, tokenizer_dir)
    before = (run / "run.json").read_text()
    other = write_shards(tmp_path / "other", tokenizer_dir, train_docs=300, val_docs=40)
    with pytest.raises(ValueError) as caught:
        prepare_run(run, other, micro_cfg, resume=True)
    trained_on = json.loads(before)["data_manifest_sha256"]
    assert str(caught.value).startswith(
        f"{run / 'run.json'}: the run was trained on other data (manifest sha256 {trained_on[:12]}, {data_dir})"
    )
    assert "Resume with the run's own --data, or start a new run with another --out" in str(caught.value)
    assert (run / "run.json").read_text() == before  # nothing overwritten
    assert prepare_run(run, data_dir, micro_cfg, resume=True) == run  # its own data resumes
