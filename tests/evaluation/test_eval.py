"""`chakor eval` on a real export and GGUFs our converter made: reports, gates per quant, a corrupted GGUF."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import typer
from gguf import GGUFReader
from typer.testing import CliRunner

from converter.convert import convert
from evaluation.cli import register
from evaluation.report import EvalReport, QuantRow, read_report, report_for
from tests.converter.conftest import CORPUS, make_export, requires_llama
from tests.converter.test_valdata import write_data
from trainer.configs import ModelConfig
from trainer.tokenizer.train import tokenizer_sha256

pytestmark = requires_llama
MIN_TOKENS = "2000"  # enough windows for stable numbers on the micro model, seconds to run


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory, export_dir: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("ggufs")
    return {t: convert(export_dir, out / f"model-{t}.gguf", t) for t in ("f32", "f16", "q8_0")}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("data") / "shards"
    write_data(path, tokenizer_dir, tokenizer_sha256(tokenizer_dir), CORPUS * 40)
    return path


def corrupt(source: Path, target: Path, tensor: str, factor: float) -> Path:
    """A copy of a GGUF with one tensor's values multiplied by `factor` (everything else byte-identical)."""
    shutil.copyfile(source, target)
    reader = GGUFReader(target, "r+")
    (found,) = [t for t in reader.tensors if t.name == tensor]
    values = found.data
    values[...] = (values.astype(np.float32) * factor).astype(values.dtype)
    reader.data.flush()  # the reader maps the file; write the scaled values back
    del reader
    return target


def read_back(path: Path) -> dict:
    """eval.json as written, after checking that its typed report writes exactly the same file."""
    report = read_report(path)
    assert isinstance(report, EvalReport)
    written = path.read_text(encoding="utf-8")
    assert json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n" == written
    return json.loads(written)


def run_cli(*args: str) -> tuple[int, str]:
    app = typer.Typer()
    register(app)
    app.command("unused")(lambda: None)  # two commands: typer keeps `eval` as a subcommand
    result = CliRunner().invoke(app, list(args), terminal_width=250)
    return result.exit_code, result.output


def test_eval_writes_the_report_and_gates_each_quant(
    tmp_path: Path,
    ggufs: dict[str, Path],
    data: Path,
    export_dir: Path,
) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        json.dumps({"question": "What is two plus three?", "reference": "Two plus three is five."}) + "\n"
    )
    code, output = run_cli(
        "eval", str(export_dir), *(str(p) for p in ggufs.values()), "--data", str(data),
        "--qa", str(qa), "--min-kld-tokens", MIN_TOKENS, "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, output
    report = read_back(tmp_path / "eval.json")
    rows = {row["quant"]: row for row in report["quantization"]["rows"]}
    assert list(rows) == ["f32", "f16", "q8_0"]
    assert rows["f32"]["verdict"] == "base" and rows["f32"]["passed"] is True
    assert report["quantization"]["f32_vs_pytorch"]["relative_delta"] < 1e-3
    assert rows["f16"]["gate"]["max_mean_kld"] == 1e-4 and rows["q8_0"]["gate"]["max_mean_kld"] == 1e-3
    assert rows["q8_0"]["gate"]["min_same_top"] == 0.98
    assert rows["f16"]["mean_kld"] < 1e-5 < rows["q8_0"]["mean_kld"] < 1e-3
    assert rows["f16"]["passed"] and rows["q8_0"]["passed"] and report["passed"]
    assert report["serve"] == "q8_0"  # the smallest that passed
    assert report["quantization"]["scored_tokens"] >= int(MIN_TOKENS)
    assert "multiple of 256" in report["quantization"]["k_quants_skipped"]  # the micro model is 64 wide
    val = report["validation"]
    assert val["bits_per_byte"] == pytest.approx(val["loss"] / np.log(2) * val["tokens"] / val["bytes"])
    assert report["qa"]["items"] == 1 and report["qa"]["modes"]["off"]["asked"] == 1
    assert report["qa"]["modes"]["documents"]["skipped"] == 1  # no documents in the record, no index
    assert len(report["samples"]) == 5
    assert all(row["speed"]["gen_tps"] > 0 and row["speed"]["prompt_tps"] > 0 for row in rows.values())
    assert (tmp_path / report["plots"]["kld"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| q8_0 |" in (tmp_path / "eval.md").read_text()
    assert "serve: q8_0" in output
    # the report vouches for exactly these files, and `chakor up` says when it does not
    served = tmp_path / "model-q8_0.gguf"
    shutil.copyfile(ggufs["q8_0"], served)
    assert report_for(served)[1] == QuantRow.from_dict(rows["q8_0"])
    assert warning(served) == ""
    served.write_bytes(ggufs["f16"].read_bytes())
    assert report_for(served)[1] is None  # same name, other bytes
    assert warning(served) == (
        f"warning: {served} has no passing eval report ({tmp_path / 'eval.json'} does not cover this file "
        "(name, size or SHA-256 differ)); run `chakor eval` on it"
    )
    assert warning(ggufs["q8_0"]).startswith(
        f"warning: {ggufs['q8_0']} has no passing eval report (no eval.json"
    )


def warning(model: Path) -> str:
    """What `chakor up --model MODEL` prints about MODEL's eval report."""
    from chakor import cli

    with cli.console.capture() as captured:
        cli.warn_unvetted(model)
    return " ".join(captured.get().split())


def test_corrupted_gguf_fails_its_gate(
    tmp_path: Path,
    ggufs: dict[str, Path],
    data: Path,
    export_dir: Path,
) -> None:
    bad = corrupt(ggufs["f16"], tmp_path / "model-f16.gguf", "blk.1.ffn_down.weight", 1.5)
    code, output = run_cli(
        "eval", str(export_dir), str(ggufs["f32"]), str(bad), str(ggufs["q8_0"]), "--data", str(data),
        "--min-kld-tokens", MIN_TOKENS, "--no-bench", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 1, output
    report = read_back(tmp_path / "eval.json")
    rows = {row["quant"]: row for row in report["quantization"]["rows"]}
    kld = rows["f16"]["mean_kld"]
    assert kld > 1e-3  # orders of magnitude above the f16 gate
    assert rows["f16"]["message"] == f"f16 FAILS its gate: mean KLD {kld:.6g} > 0.0001"
    assert f"f16 FAILS its gate: mean KLD {kld:.6g} > 0.0001" in output and "evaluation FAILED" in output
    assert rows["q8_0"]["passed"] is True and report["serve"] == "q8_0" and report["passed"] is False


def test_bad_inputs_are_clear_errors(
    tmp_path: Path, ggufs: dict[str, Path], data: Path, export_dir: Path
) -> None:
    code, output = run_cli("eval", str(export_dir), str(ggufs["q8_0"]), "--data", str(data))
    assert code == 2 and "the KL-divergence base is missing: pass an f32 GGUF" in output
    code, output = run_cli("eval", str(export_dir), str(ggufs["f32"]), "--data", str(tmp_path / "none"))
    assert code == 2 and f"{tmp_path / 'none' / 'manifest.json'}: cannot read JSON" in output


def test_k_quant_of_a_wide_model_is_gated(
    tmp_path: Path, micro_cfg: ModelConfig, tokenizer_dir: Path, data: Path
) -> None:
    """At width 256 the quickstart's q4_k_m is a real K-quant, held to its own row of the table."""
    cfg = replace(micro_cfg, dim=256, ffn_hidden_dim=512, n_heads=4, n_kv_heads=4)
    export = make_export(tmp_path / "wide", cfg, tokenizer_dir, steps=0)
    paths = [convert(export, tmp_path / f"model-{t}.gguf", t) for t in ("f32", "q4_k_m")]
    code, output = run_cli(
        "eval", str(export), *map(str, paths), "--data", str(data), "--min-kld-tokens", MIN_TOKENS,
        "--no-bench", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, output
    report = read_back(tmp_path / "eval.json")
    (row,) = [r for r in report["quantization"]["rows"] if r["quant"] == "q4_k_m"]
    assert row["gate"]["max_mean_kld"] == 5e-2 and row["passed"] and report["serve"] == "q4_k_m"
    assert report["quantization"]["k_quants_skipped"] is None
