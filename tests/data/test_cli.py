"""The `data` and `tokenizer` command groups, run end to end through typer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from trainer.data import prepare
from trainer.data.cli import register
from trainer.data.executor import StageError

runner = CliRunner()


def chakor() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_prepare_tokenizer_tokenize_count(tmp_path: Path, corpus_sources: list[str]) -> None:
    app = chakor()
    weight = f"{corpus_sources[1]}=2"
    args = ["data", "prepare", "--out", str(tmp_path / "data"), "--weight", weight, "--seed", "7"]
    for source in corpus_sources:
        args += ["--source", source]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "near_duplicate" in result.output and "kept 10 documents" in result.output
    assert "malformed lines in" in result.output and "3, 5, 6" in result.output

    result = runner.invoke(
        app,
        [
            "tokenizer",
            "train",
            "--data",
            str(tmp_path / "data"),
            "--vocab-size",
            "300",
            "--out",
            str(tmp_path / "tok"),
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<|bos|>"

    args = ["data", "tokenize", "--data", str(tmp_path / "data"), "--tokenizer", str(tmp_path / "tok")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "shards"), "--val-fraction", "0.1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())

    result = runner.invoke(app, ["data", "count-tokens", str(tmp_path / "shards")])
    assert result.exit_code == 0, result.output
    train, val = manifest["splits"]["train"]["tokens"], manifest["splits"]["val"]["tokens"]
    assert result.output.split() == ["train", str(train), "val", str(val), "total", str(train + val)]


def test_clear_errors_and_exit_status_2(tmp_path: Path) -> None:
    app = chakor()
    result = runner.invoke(
        app, ["data", "prepare", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert f"error: source '{tmp_path / 'nope'}': {tmp_path / 'nope'} does not exist" in " ".join(
        result.output.split()
    )
    result = runner.invoke(
        app,
        ["data", "prepare", "--source", "local:python-docs", "--weight", "x", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2 and "expected SOURCE=NUMBER" in result.output
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "report.json").write_text("{}")
    result = runner.invoke(
        app,
        [
            "tokenizer",
            "train",
            "--data",
            str(tmp_path / "data"),
            "--vocab-size",
            "100",
            "--out",
            str(tmp_path / "tok"),
        ],
    )
    assert result.exit_code == 2
    assert "vocab size 100 is too small: it needs at least 263" in result.output
    assert not (tmp_path / "tok").exists()
    result = runner.invoke(app, ["data", "count-tokens", str(tmp_path)])
    assert result.exit_code == 2 and "run `chakor data tokenize` first" in result.output
    assert not (tmp_path / "o").exists()


def test_executor_options_are_checked_before_any_work(tmp_path: Path, corpus_sources: list[str]) -> None:
    app = chakor()
    base = ["data", "prepare", "--source", corpus_sources[0], "--out", str(tmp_path / "o")]
    cases = {
        ("--executor", "spark"): "--executor must be one of local, ray, slurm, got 'spark'",
        ("--executor", "slurm"): "--executor slurm needs --partition",
        (
            "--perplexity-model",
            str(tmp_path),
        ): "--perplexity-model goes with one of --max-perplexity or --drop-worst",
        ("--drop-worst", "5"): "--perplexity-model goes with one of --max-perplexity or --drop-worst",
    }
    for extra, message in cases.items():
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


def test_a_stage_that_fails_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise StageError("stage 'read': tasks [0] did not complete (see logs)")

    monkeypatch.setattr(prepare, "prepare", failing)
    result = runner.invoke(
        chakor(), ["data", "prepare", "--source", "local:python-docs", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1  # the work was tried and failed, unlike the bad input above (2)
    assert "error: stage 'read': tasks [0] did not complete" in result.output
