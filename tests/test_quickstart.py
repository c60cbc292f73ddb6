"""`chakor quickstart`'s stage cache, on two cheap real stages (SFT data, then a re-validation of it)."""

from __future__ import annotations

import json
from pathlib import Path

from chakor.quickstart import Stage, pretrain_forecast, run_stage, sft_forecast, stages


def test_a_stage_runs_once_and_again_only_when_an_input_changes(tmp_path: Path) -> None:
    first, second, stamps = tmp_path / "qa", tmp_path / "revalidated", tmp_path / ".stamps"
    make = Stage(
        "qa", ("data", "sft", "--source", "local:python-qa", "--limit", "20", "--out", str(first)), (), first
    )
    check = Stage(
        "revalidate",
        ("data", "sft", "--source", str(first / "sft.jsonl"), "--out", str(second)),
        (first,),
        second,
    )
    assert isinstance(run_stage(make, stamps), float) and isinstance(run_stage(check, stamps), float)
    assert len((second / "sft.jsonl").read_text().splitlines()) == 20
    assert run_stage(make, stamps) is None and run_stage(check, stamps) is None  # both cached

    conversations = (first / "sft.jsonl").read_text().splitlines()
    (first / "sft.jsonl").write_text("\n".join(conversations[:5]) + "\n")  # an input of `check` changes
    assert run_stage(make, stamps) is None
    assert isinstance(run_stage(check, stamps), float)
    assert len((second / "sft.jsonl").read_text().splitlines()) == 5

    (second / "sft.jsonl").unlink()
    (second / "report.json").unlink()
    second.rmdir()  # a missing output runs the stage again, inputs unchanged
    assert isinstance(run_stage(check, stamps), float)


def test_the_forecasts_come_from_the_stages_steps_and_the_pretrainings_speed(tmp_path: Path) -> None:
    (tmp_path / "pretrain").mkdir()
    sft = next(stage for stage in stages(tmp_path) if stage.name == "sft")
    steps = int(sft.args[sft.args.index("--steps") + 1])
    whole = 1 + steps * 0.74 / 600 + 0.25  # SFT tokens cost 0.74x; export to eval a quarter of pretraining
    assert pretrain_forecast(sft) == (
        f"Pretraining next, then SFT ({steps * 2048:,} tokens) and the stages after it: about {whole:.1f}x "
        "the pretraining's time in all (its progress bar shows its time left from the first steps)"
    )
    assert sft_forecast(tmp_path, sft) is None  # no pretraining measured yet
    (tmp_path / "pretrain" / "run.json").write_text(
        json.dumps({"train": {"steps": 600, "local_batch_size": 8, "seq_len": 256}})
    )
    # Start-up steps are slow; the median of the others is the speed. A validation record has no speed.
    rates = [300.0, 900.0, 1500.0, 2000.0, 2048.0, 1900.0]
    records = [{"step": i + 1, "loss": 5.0, "tokens_per_s": rate} for i, rate in enumerate(rates)]
    records.insert(1, {"step": 1, "val_loss": 5.5})
    (tmp_path / "pretrain" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    sft_minutes = steps * 2048 * 0.74 / 2000 / 60
    after_minutes = 0.25 * 600 * 2048 / 2000 / 60  # 2.6 min
    assert sft_forecast(tmp_path, sft) == (
        f"SFT next: {steps * 2048:,} tokens, ~{sft_minutes:.1f} min at the pretraining's 2,000 tokens/s; "
        f"then export, GGUFs, verify and eval ~2.6 min: about {sft_minutes + after_minutes:.1f} min left"
    )
