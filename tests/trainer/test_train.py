"""Real torchrun runs of a micro model: 2-process gloo training, exact resume, NaN stop, export, errors."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from trainer.configs import ModelConfig
from trainer.export import export_run, load_checkpoint, load_export
from trainer.metrics import read_metrics
from trainer.model import Transformer
from trainer.tokenizer import train_tokenizer
from trainer.train import TrainingError, checkpoint_steps, prepare_run, run_training

from .conftest import RECIPE, write_shards

pytestmark = pytest.mark.slow


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r}


def test_two_process_run_learns_and_writes_its_folder(pretrain_run: Path) -> None:
    records = read_metrics(pretrain_run / "metrics.jsonl")
    losses = _losses(pretrain_run)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert losses[6] < losses[1] - 1.0
    train = [r for r in records if "loss" in r]
    # 2 ranks x 4 sequences x 64 tokens per step: both processes trained.
    assert [r["tokens"] for r in train] == [512.0 * s for s in range(1, 7)]
    val = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in val] == [1, 3, 6]
    assert val[-1]["val_loss"] < val[0]["val_loss"]
    assert val[-1]["val_ppl"] == pytest.approx(math.exp(val[-1]["val_loss"]), rel=1e-4)
    assert (pretrain_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = [json.loads(line) for line in (pretrain_run / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [1, 3, 6]
    assert [p["prompt"] for p in samples[0]["samples"]] == ["The", "Once upon a time", "def "]
    assert checkpoint_steps(pretrain_run) == [3, 6]


def test_resume_continues_exactly(pretrain_run: Path, tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    shutil.copytree(pretrain_run, resumed, ignore=shutil.ignore_patterns("step-6"))
    assert checkpoint_steps(resumed) == [3]
    run_training(
        resumed,
        Path(json.loads((resumed / "run.json").read_text())["data"]),
        nproc=2,
        resume=True,
        quiet=True,
    )
    assert _losses(resumed) == _losses(pretrain_run)
    cfg = ModelConfig.from_dict(json.loads((resumed / "run.json").read_text())["model"])
    a = load_checkpoint(pretrain_run / "checkpoint" / "step-6", cfg)
    b = load_checkpoint(resumed / "checkpoint" / "step-6", cfg)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_export_from_run_matches_checkpoint(
    pretrain_run: Path, tmp_path: Path, micro_cfg: ModelConfig
) -> None:
    out = export_run(pretrain_run, tmp_path / "export", hf=True)
    model, cfg = load_export(out)
    assert cfg == micro_cfg
    reference = Transformer(cfg)
    reference.load_state_dict(load_checkpoint(pretrain_run / "checkpoint" / "step-6", cfg))
    tokens = torch.randint(0, cfg.vocab_size, (2, 16))
    torch.testing.assert_close(model(tokens), reference.eval()(tokens), rtol=0, atol=0)
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["steps"] == 6 and lineage["kind"] == "pretrain"
    assert lineage["final_losses"]["train"] == _losses(pretrain_run)[6]
    assert (
        lineage["tokenizer_sha256"] == json.loads((pretrain_run / "run.json").read_text())["tokenizer_sha256"]
    )
    assert (out / "hf" / "model.safetensors").is_file()


def test_checkpoint_from_another_config_is_refused(
    pretrain_run: Path, tmp_path: Path, micro_cfg: ModelConfig
) -> None:
    data = Path(json.loads((pretrain_run / "run.json").read_text())["data"])
    with pytest.raises(ValueError, match=r"run\.json: the checkpoints there are from another model config"):
        prepare_run(pretrain_run, data, replace(micro_cfg, dim=32), resume=True)
    fake = tmp_path / "fake"
    shutil.copytree(pretrain_run, fake)
    run = json.loads((fake / "run.json").read_text())
    run["model"]["dim"] = 32
    (fake / "run.json").write_text(json.dumps(run))
    mismatch = r"step-6: weights do not match the model config \(shape tok_embeddings.weight \(320, 64\) != \(320, 32\)"
    with pytest.raises(ValueError, match=mismatch):
        export_run(fake, tmp_path / "export")
    with pytest.raises(ValueError, match=mismatch):
        run_training(fake, data, resume=True, quiet=True)
    assert not (tmp_path / "export").exists()


def test_existing_run_needs_resume(pretrain_run: Path, micro_cfg: ModelConfig) -> None:
    data = Path(json.loads((pretrain_run / "run.json").read_text())["data"])
    with pytest.raises(FileExistsError, match="already holds a run: pass --resume"):
        prepare_run(pretrain_run, data, micro_cfg, pretrain_run / "tokenizer")


def test_missing_and_empty_data_dir(tmp_path: Path, micro_cfg: ModelConfig, tokenizer_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data directory .*nope does not exist"):
        prepare_run(tmp_path / "run", tmp_path / "nope", micro_cfg, tokenizer_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/manifest.json not found"):
        prepare_run(tmp_path / "run", tmp_path / "empty", micro_cfg, tokenizer_dir)
    assert not (tmp_path / "run").exists()


def test_tokenizer_mismatches(
    tmp_path: Path, data_dir: Path, micro_cfg: ModelConfig, tokenizer_dir: Path
) -> None:
    with pytest.raises(ValueError, match="vocab size 320 does not match the model config's vocab_size 400"):
        prepare_run(tmp_path / "run", data_dir, replace(micro_cfg, vocab_size=400), tokenizer_dir)
    other = train_tokenizer(["another corpus entirely"] * 50, vocab_size=300, out_dir=tmp_path / "tok")
    with pytest.raises(ValueError, match="tokenizer_sha256 does not match"):
        prepare_run(tmp_path / "run", data_dir, micro_cfg, other)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, data_dir: Path, micro_cfg: ModelConfig, tokenizer_dir: Path
) -> None:
    recipe = {
        **RECIPE,
        "lr": 1e38,
        "warmup_steps": 1,
        "checkpoint_every": 1,
        "eval_every": 100,
        "sample_tokens": 0,
    }
    with pytest.raises(
        TrainingError, match=r"loss became NaN/inf at step 2; .* last good checkpoint is step 1"
    ):
        run_training(tmp_path / "nan", data_dir, micro_cfg, tokenizer_dir, quiet=True, **recipe)
    assert checkpoint_steps(tmp_path / "nan") == [1]
    assert read_metrics(tmp_path / "nan" / "metrics.jsonl")[-1] == {"step": 2, "nonfinite_loss": 1.0}


def test_small_data_dir_is_refused(tmp_path: Path, tokenizer_dir: Path, micro_cfg: ModelConfig) -> None:
    data = write_shards(tmp_path / "data", tokenizer_dir, train_docs=400, val_docs=1)
    with pytest.raises(ValueError, match=r"split 'val' has \d+ tokens, need more than seq_len 256"):
        prepare_run(tmp_path / "run", data, micro_cfg, tokenizer_dir)


def test_tensor_parallel_with_gradient_accumulation(
    tmp_path: Path, data_dir: Path, tokenizer_dir: Path, micro_cfg: ModelConfig
) -> None:
    """2 processes as one TP=2 group (Megatron + sequence parallel plan, every parameter on the TP mesh),
    4 micro-batches a step."""
    cfg = replace(micro_cfg, tie_embeddings=False)
    recipe = {
        **RECIPE, "steps": 4, "eval_every": 4, "checkpoint_every": 4, "sample_tokens": 4,
        "tensor_parallel": 2, "global_batch_size": 16,
    }  # fmt: skip
    run = run_training(tmp_path / "run", data_dir, cfg, tokenizer_dir, nproc=2, quiet=True, **recipe)
    losses = _losses(run)
    assert sorted(losses) == [1, 2, 3, 4] and losses[4] < losses[1] - 0.5
    # 16 sequences of 64 tokens per optimizer step, from 4 accumulated micro-batches of 4.
    tokens = [r["tokens"] for r in read_metrics(run / "metrics.jsonl") if "tokens" in r]
    assert tokens == [1024.0 * s for s in range(1, 5)]
    assert "gradient accumulation steps 4" in (run / "train.log").read_text()
    # Sampling under TP + sequence parallelism: rank 0 chooses, both ranks run the padded forwards.
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [len(row["samples"]) for row in samples] == [3, 3]  # validation at steps 1 and 4
    model, _ = load_export(export_run(run, tmp_path / "export"))
    assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, cfg.vocab_size)


def test_trained_context_goes_to_the_gguf_and_llama_server(
    pretrain_run: Path, tmp_path: Path, logs_dir: Path
) -> None:
    """lineage.json records seq_len 64; the GGUF advertises 64 (not max_seq_len 256); chakor up's
    llama-server gets 4 slots x 64 and reports 64 per slot, the context the backend sizes prompts by."""
    import httpx

    from chakor.services import llama_process
    from common.process import free_port
    from common.settings import load_settings
    from converter.convert import convert
    from converter.gguf_info import read_gguf

    export = export_run(pretrain_run, tmp_path / "export")
    assert json.loads((export / "lineage.json").read_text())["seq_len"] == RECIPE["seq_len"] == 64
    gguf = convert(export, tmp_path / "model.gguf", "f32")
    assert read_gguf(gguf).metadata["llama.context_length"] == 64
    settings = load_settings(llama_port=free_port(), llama_parallel=4, llama_ctx_size=2048, llama_threads=1)
    process = llama_process(settings, gguf, logs_dir)
    assert process.argv[process.argv.index("--ctx-size") + 1] == "256"
    process.start()
    try:
        process.wait_healthy(timeout=60)
        props = httpx.get(f"http://{settings.llama_host}:{settings.llama_port}/props").json()
        assert props["default_generation_settings"]["n_ctx"] == 64
    finally:
        process.stop()
