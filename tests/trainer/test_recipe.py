"""Recipes per size: `--plan` JSON for every config, overrides, the budget recipe of tiny; the dry runs;
the plan at the tokenizer's vocabulary, the same for `--plan` and a run."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.chat import load_tokenizer
from trainer.configs import MODEL_CONFIGS, ModelConfig, TrainConfig, get_model_config, resolve_model
from trainer.recipe import plan_recipe
from trainer.tokenizer import train_tokenizer

from .conftest import write_shards
from .test_cli import app

runner = CliRunner()
KEYS = {
    "params",
    "tokens",
    "tokens_per_param",
    "steps",
    "global_batch_tokens",
    "seq_len",
    "lr",
    "warmup_steps",
}


def plan_json(*args: str) -> dict:
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("name", list(MODEL_CONFIGS))
def test_plan_json_for_every_config(name: str) -> None:
    plan = plan_json("--config", name, "--nproc", "8", "--plan")
    assert set(plan) >= KEYS
    cfg = MODEL_CONFIGS[name]
    assert plan["params"] == cfg.num_params()
    assert plan["tokens"] == plan["steps"] * plan["global_batch_tokens"]
    assert plan["tokens_per_param"] == round(plan["tokens"] / plan["params"], 3)
    assert plan["global_batch_tokens"] == plan["global_batch_size"] * plan["seq_len"]
    assert plan["global_batch_size"] % (plan["local_batch_size"] * 8) == 0
    if name == "tiny":  # the quickstart's budget recipe, untouched
        assert plan["recipe"] == "budget"
        default = TrainConfig()
        assert (plan["steps"], plan["seq_len"], plan["lr"]) == (default.steps, default.seq_len, default.lr)
        assert plan["global_batch_tokens"] == default.local_batch_size * 8 * default.seq_len
    else:  # derived: Chinchilla tokens, the model's context, DeepSeek-fit LR well below tiny's 3e-3
        assert plan["recipe"] == "derived"
        assert 20 <= plan["tokens_per_param"] < 20.5
        assert plan["seq_len"] == cfg.max_seq_len and plan["fits_80gb"]
        assert 3e-4 <= plan["lr"] < 2e-3 and 100 <= plan["warmup_steps"] <= plan["steps"] // 10
        assert {"lr", "warmup_steps", "local_batch_size", "steps", "checkpoint_every"} <= set(plan["rules"])


def test_larger_models_get_larger_batches_and_lower_lr() -> None:
    plans = [
        plan_recipe(*resolve_model(name), nproc=64, tp=8 if name == "7b" else 1)
        for name in ("small", "1b", "7b")
    ]
    assert [p.global_batch_tokens for p in plans] == [262_144, 1_048_576, 4_194_304]
    assert plans[0].lr > plans[1].lr > plans[2].lr
    assert plans[1].lr == pytest.approx(9.55e-4, rel=0.01)  # the DeepSeek fit, no published cap for 1b


def test_the_7b_recipe_takes_llama2s_lr_and_warmup() -> None:
    """The fit gives 6.0e-4 and 321 warmup steps for 7b: capped at Llama-2-7B's (and the seed's) 3e-4, 2000."""
    plan = plan_json("--config", "7b", "--nnodes", "8", "--nproc", "8", "--plan")
    assert (plan["lr"], plan["warmup_steps"]) == (3e-4, 2000)
    assert "capped at the published value" in plan["rules"]["lr"] and "(fit: 5.98e-04)" in plan["rules"]["lr"]
    assert "Llama-2-7B" in plan["rules"]["warmup_steps"]
    assert plan_json("--config", "7b", "--plan", "--lr", "1e-4")["lr"] == 1e-4  # an override still wins
    assert "lr" not in plan_json("--config", "7b", "--plan", "--lr", "1e-4")["rules"]


def test_every_field_is_overridable() -> None:
    plan = plan_json(
        "--config", "small", "--plan", "--steps", "10", "--lr", "1e-4", "--seq-len", "512", "--warmup-steps", "3",
        "--batch-size", "4", "--global-batch-size", "64", "--tokens-per-param", "5",
    )  # fmt: skip
    assert (plan["steps"], plan["lr"], plan["seq_len"], plan["warmup_steps"]) == (10, 1e-4, 512, 3)
    assert (plan["local_batch_size"], plan["global_batch_size"], plan["tokens"]) == (4, 64, 10 * 64 * 512)
    assert plan["recipe"].startswith("derived + overrides")
    assert 40 <= plan_json("--config", "1b", "--plan", "--tokens-per-param", "40")["tokens_per_param"] < 41


def test_bad_plans_are_refused() -> None:
    result = runner.invoke(app, ["train", "--config", "7b", "--nproc", "12", "--tp", "8", "--plan"])
    assert result.exit_code == 2 and "--nproc 12 is not a multiple of --tp 8" in result.output
    result = runner.invoke(app, ["train", "--config", "small"])
    assert result.exit_code == 2 and "--data and --out are needed to train" in result.output


@pytest.mark.parametrize(("name", "nproc"), [("1b", 8), ("1b", 64), ("7b", 8), ("7b", 64)])
def test_dry_run_shards_on_meta_over_a_fake_process_group(name: str, nproc: int) -> None:
    tp = 8 if name == "7b" and nproc == 64 else 1
    report = plan_json("--config", name, "--nproc", str(nproc), "--tp", str(tp), "--dry-run")
    dry, cfg = report["dry_run"], MODEL_CONFIGS[name]
    assert dry["device"] == "meta" and dry["world_size"] == nproc
    assert dry["mesh"] == ({"fsdp": nproc // tp, "tp": tp} if tp > 1 else {"fsdp": nproc})
    # Rank 0's shard of the real plan: about N / world (norms are replicated over TP, shards round up).
    assert dry["params_rank0"] == pytest.approx(cfg.num_params() / nproc, rel=1e-3)
    wq = dry["parameters"]["layers.0.attention.wq.weight"]
    assert wq["global_shape"] == [cfg.dim, cfg.dim]
    assert wq["local_shape"] == [cfg.dim // nproc, cfg.dim]  # FSDP rows x TP column-parallel rows
    if tp > 1:
        assert wq["placements"]["tp"] == "S(0)"
        assert dry["parameters"]["layers.0.attention.wo.weight"]["placements"]["tp"] == "S(1)"
        assert dry["parameters"]["norm.weight"]["placements"]["tp"] == "R"
    memory = dry["memory_per_gpu_gib"]
    assert memory["params"] == round(4 * dry["params_rank0"] / 2**30, 2)
    assert memory["optimizer"] == round(8 * dry["params_rank0"] / 2**30, 2)
    assert memory["total"] < 0.85 * 80 and dry["fits_80gb"]
    assert memory["total"] == pytest.approx(report["plan"]["memory_per_gpu_gib"]["total"], rel=0.01)
    assert (
        dry["gradient_accumulation"] * dry["micro_batch"] * (nproc // tp)
        == report["plan"]["global_batch_size"]
    )


SMALL_AT_4096 = (
    102_255_360  # get_model_config("small", 4096).num_params(); 123,685,632 at the registry's 32,000
)


@pytest.fixture(scope="module")
def tokenizer_4096(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4,096-token tokenizer from the project's trainer, on made-up words (enough merges for 4,096)."""
    rng = random.Random(0)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(3000)]
    corpus = [" ".join(rng.choices(words, k=50)) for _ in range(400)]
    out = train_tokenizer(corpus, vocab_size=4096, out_dir=tmp_path_factory.mktemp("data") / "tokenizer")
    assert load_tokenizer(out).get_vocab_size() == 4096
    return out


def test_the_plan_is_for_the_tokenizers_vocabulary(tokenizer_4096: Path) -> None:
    assert get_model_config("small", 4096).num_params() == SMALL_AT_4096
    plan = plan_json("--config", "small", "--plan", "--tokenizer", str(tokenizer_4096))
    assert (plan["vocab_size"], plan["params"]) == (4096, SMALL_AT_4096)
    assert 20 <= plan["tokens_per_param"] < 20.5  # 20 tokens per parameter of the model that trains
    registry = plan_json("--config", "small", "--plan")  # no tokenizer: the registry's vocabulary
    assert (registry["vocab_size"], registry["params"]) == (32_000, MODEL_CONFIGS["small"].num_params())
    assert registry["tokens"] > plan["tokens"]


def test_a_run_trains_with_the_plan_that_plan_prints(
    tokenizer_4096: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--plan --data D` finds the shards' tokenizer as a run does, and prints the recipe the run uses."""
    data = write_shards(tokenizer_4096.parent / "shards", tokenizer_4096, val_docs=400)
    launched: list[Path] = []
    monkeypatch.setattr("trainer.train.launch", lambda run_dir, *args, **kwargs: launched.append(run_dir))
    plan = plan_json("--config", "small", "--nproc", "8", "--data", str(data), "--plan")
    result = runner.invoke(
        app, ["train", "--config", "small", "--nproc", "8", "--data", str(data), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert launched == [(tmp_path / "r").resolve()]
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    cfg = ModelConfig.from_dict(run["model"])
    assert (run["model_name"], cfg.vocab_size, cfg.num_params()) == ("small", 4096, plan["params"])
    assert plan["params"] == SMALL_AT_4096
    train = run["train"]
    assert {k: train[k] for k in ("steps", "lr", "seq_len", "warmup_steps", "local_batch_size")} == {
        k: plan[k] for k in ("steps", "lr", "seq_len", "warmup_steps", "local_batch_size")
    }
    assert train["global_batch_size"] == plan["global_batch_size"]
    assert train["activation_checkpointing"] == plan["activation_checkpointing"]
