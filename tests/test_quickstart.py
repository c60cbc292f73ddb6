"""`chakor quickstart`'s stage cache, on two cheap real stages (SFT data, then a re-validation of it)."""

from __future__ import annotations

from pathlib import Path

from chakor.quickstart import Stage, run_stage


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
