"""The `train`, `sft` and `export` commands through typer, as `chakor` registers them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from trainer.cli import register

app = typer.Typer()
register(app)
runner = CliRunner()


def test_commands_are_registered() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in ("train", "sft", "export"))


def test_train_reports_a_missing_data_dir(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2  # bad input, not a failed run
    assert "does not exist: run `chakor data prepare` first" in result.output


@pytest.mark.slow
def test_export_command(pretrain_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(pretrain_run), "--out", str(tmp_path / "e"), "--format", "hf"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "lineage.json").read_text())["steps"] == 6
    assert (tmp_path / "e" / "hf" / "config.json").is_file()
    bad = runner.invoke(app, ["export", str(pretrain_run), "--out", str(tmp_path / "f"), "--format", "gguf"])
    assert bad.exit_code == 2 and "--format must be native or hf" in bad.output


def test_sft_reports_a_base_without_run(tmp_path: Path) -> None:
    (tmp_path / "sft.jsonl").write_text("[]\n")
    args = [
        "sft",
        "--base",
        str(tmp_path),
        "--data",
        str(tmp_path / "sft.jsonl"),
        "--out",
        str(tmp_path / "o"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "is not a chakor run folder" in result.output
