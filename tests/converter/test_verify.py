"""llama-server and llama-perplexity reproduce the exported model; verification catches a wrong one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from converter.cli import register
from converter.convert import convert
from converter.reference import Reference
from converter.samples import CONVERSATIONS, PROMPTS, TOKENIZER_TEXTS
from converter.verify import VerifyReport, verify
from tests.converter.conftest import CORPUS, make_export, requires_llama
from tests.converter.test_valdata import write_data
from trainer.tokenizer.train import tokenizer_sha256

pytestmark = requires_llama


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory, export_dir: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("ggufs")
    return {t: convert(export_dir, out / f"m-{t}.gguf", t) for t in ("f32", "q8_0")}


@pytest.fixture(scope="module")
def reference(export_dir: Path) -> Reference:
    return Reference(export_dir)


@pytest.fixture(scope="module")
def other_export(tmp_path_factory: pytest.TempPathFactory, micro_cfg, tokenizer_dir: Path) -> Path:
    """Same shapes and tokenizer as export_dir, other (untrained) weights."""
    return make_export(tmp_path_factory.mktemp("other") / "other", micro_cfg, tokenizer_dir, steps=0)


def checks(report: VerifyReport) -> dict[str, dict]:
    return {c.name: {"passed": c.passed, **c.details} for c in report.checks}


def test_f32_matches_pytorch(ggufs: dict[str, Path], export_dir: Path, reference: Reference) -> None:
    report = verify(ggufs["f32"], export_dir, reference=reference)
    result = checks(report)
    assert report.passed and report.file_type == "ALL_F32"
    assert result["identity"] == {"passed": True, "mismatches": {}}
    assert result["tokenizer"] == {"passed": True, "cases": 2 * len(TOKENIZER_TEXTS), "mismatches": []}
    assert result["stop_token"] == {"passed": True, "stop_type": "eos", "tokens_predicted": 1, "eot": 6}
    logits = result["logits"]
    positions = sum(min(len(reference.encode(p)) + 1, 17) for p in PROMPTS)
    assert (logits["passed"], logits["positions"], logits["top1_agreement"]) == (True, positions, 1.0)
    assert logits["max_abs_delta"] < 1e-3
    assert result["chat_template"] == {
        "passed": True,
        "cases": 2 * len(CONVERSATIONS),
        "mismatches": [],
        "typed_special_tokens_become_control": True,  # llama-server parses specials in rendered text
    }
    ppl = result["perplexity"]
    assert ppl["passed"] and ppl["relative_delta"] < 1e-3 and ppl["n_ctx"] == 128


def test_q8_0_gets_the_structural_checks(
    ggufs: dict[str, Path], export_dir: Path, reference: Reference
) -> None:
    """A quantized GGUF is not compared with PyTorch here: `chakor eval` gates it on KL divergence."""
    report = verify(ggufs["q8_0"], export_dir, reference=reference)
    assert report.passed and report.file_type == "MOSTLY_Q8_0"
    assert [c.name for c in report.checks] == ["identity", "tokenizer", "stop_token", "chat_template"]
    assert all(c.passed is True for c in report.checks)


def test_wrong_checkpoint_fails(ggufs: dict[str, Path], other_export: Path) -> None:
    """Same shapes and tokenizer, other weights: identity, logits and perplexity all fail."""
    result = checks(verify(ggufs["f32"], other_export, max_positions=2))
    assert result["identity"]["passed"] is False
    assert list(result["identity"]["mismatches"]) == ["chakor.checkpoint_sha256"]
    assert result["logits"]["passed"] is False and result["perplexity"]["passed"] is False
    assert result["tokenizer"]["passed"] and result["chat_template"]["passed"]


def run_cli(*args: str) -> tuple[int, str]:
    """Run the commands as `chakor` registers them (in-process, real files and processes)."""
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, list(args), terminal_width=200)
    return result.exit_code, result.output


def test_cli_convert_verify_inspect(tmp_path: Path, export_dir: Path) -> None:
    gguf_path = tmp_path / "cli.gguf"
    code, output = run_cli("convert", str(export_dir), "--outtype", "f32", "--outfile", str(gguf_path))
    assert code == 0 and output.strip().endswith(str(gguf_path))
    report_path = tmp_path / "r.json"
    code, output = run_cli(
        "verify",
        str(gguf_path),
        "--export",
        str(export_dir),
        "--report",
        str(report_path),
        "--max-positions",
        "2",
    )
    assert code == 0 and "all checks passed" in output
    report = json.loads(report_path.read_text())
    assert report["passed"] is True
    assert [c["name"] for c in report["reports"][0]["checks"]] == [
        "identity", "tokenizer", "stop_token", "logits", "chat_template", "perplexity",
    ]  # fmt: skip
    code, output = run_cli("inspect", str(gguf_path), "--json")
    info = json.loads(output)
    assert code == 0 and info["metadata"]["general.architecture"] == "llama"
    assert {t["name"]: t["type"] for t in info["tensors"]}["blk.1.ffn_down.weight"] == "F32"
    assert {t["name"]: t["shape"] for t in info["tensors"]}["token_embd.weight"] == [
        info["metadata"]["llama.vocab_size"],
        64,
    ]


def test_cli_errors(tmp_path: Path, ggufs: dict[str, Path], other_export: Path) -> None:
    code, output = run_cli("convert", str(tmp_path / "missing"), "--outfile", str(tmp_path / "x.gguf"))
    assert (code, output) == (2, f"error: {tmp_path / 'missing'}: export directory not found\n")
    code, output = run_cli("inspect", str(tmp_path / "missing.gguf"))
    assert (code, output) == (2, f"error: {tmp_path / 'missing.gguf'}: file not found\n")
    code, output = run_cli("verify", str(ggufs["f32"]), "--export", str(other_export), "--max-positions", "1")
    assert code == 1 and "verification FAILED" in output


def test_cli_perplexity_on_val_split(
    tmp_path: Path, ggufs: dict[str, Path], export_dir: Path, tokenizer_dir: Path
) -> None:
    write_data(tmp_path / "data", tokenizer_dir, tokenizer_sha256(tokenizer_dir), CORPUS * 6)
    report_path = tmp_path / "r.json"
    code, output = run_cli(
        "verify", str(ggufs["f32"]), "--export", str(export_dir), "--data", str(tmp_path / "data"),
        "--max-positions", "1", "--ppl-ctx", "64", "--ppl-chunks", "3", "--report", str(report_path),
    )  # fmt: skip
    assert code == 0, output
    (ppl,) = [
        c for c in json.loads(report_path.read_text())["reports"][0]["checks"] if c["name"] == "perplexity"
    ]
    assert (ppl["details"]["n_ctx"], ppl["details"]["n_chunks"]) == (64, 3)
    assert ppl["passed"] and ppl["details"]["relative_delta"] < 1e-3
