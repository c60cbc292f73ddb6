"""Benchmark scoring on a real tiny export, and `chakor eval --tasks` with its GGUFs through llama-perplexity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converter.convert import convert
from converter.reference import Reference
from evaluation import scoring
from evaluation.tasks import Item
from tests.converter.conftest import requires_llama
from tests.converter.test_valdata import write_data
from tests.evaluation.test_eval import corrupt, read_back, run_cli
from tests.support import benchmark_rows as rows
from tests.support.tiny_model import TinyModel, tiny_corpus
from trainer.tokenizer.train import tokenizer_sha256

ITEMS = 48  # per task: enough that one flip in twenty shows, seconds on the tiny model


def hand_loglik(ref: Reference, context: str, continuation: str) -> tuple[float, bool, int]:
    """Sum of log p(continuation token) from one unbatched forward pass, whether each was the argmax, count."""
    ids = [ref.bos_id, *ref.encode(context + continuation)]
    n_context = 1 + len(ref.encode(context))
    logprobs = ref.logprobs(ids)
    scored = range(n_context, len(ids))
    total = sum(float(logprobs[k - 1, ids[k]]) for k in scored)
    return total, all(int(logprobs[k - 1].argmax()) == ids[k] for k in scored), len(scored)


def test_scores_match_hand_computed_log_likelihoods(tiny_model: TinyModel) -> None:
    ref = Reference(tiny_model.export_dir)
    items = [
        Item("piqa", 0, ("Question: How do I sort a list?\nAnswer:",), (" Call sorted on it.", " Paint it.")
             , 0),
        Item("winogrande", 1, ("The list was longer than the tuple so the list", "The list was longer than the "
             "tuple so the tuple"), (" took more memory.",), 0, kind="partial"),
        Item("lambada", 2, ("Return the square root of",), (" x",), 0, kind="greedy"),
        Item("heldout", 3, ("Trailing space ",), (" a", " bb", " ccc"), 2),
    ]  # fmt: skip
    scored = scoring.score_items(ref, items, max_len=2048)
    for item, result in zip(items, scored, strict=True):
        for choice in range(item.choices):
            context, continuation = item.pair(choice)
            stripped = context.rstrip(" ")  # lm-eval's move of trailing spaces into the continuation
            expected, greedy, _ = hand_loglik(ref, stripped, context[len(stripped) :] + continuation)
            assert result.choices[choice].loglik == pytest.approx(expected, abs=1e-5)
            assert result.choices[choice].greedy is greedy
    piqa = scored[0]
    chars = [len(" Call sorted on it."), len(" Paint it.")]
    assert piqa.pick("sum") == int(piqa.loglik[1] > piqa.loglik[0])
    by_char = [piqa.loglik[k] / chars[k] for k in range(2)]
    assert piqa.pick("chars") == int(by_char[1] > by_char[0])
    assert scored[2].correct("sum") is scored[2].choices[0].greedy
    # llama-perplexity's rule: the mean over the tokens after the prefix all choices share
    ids = [c.ids for c in piqa.choices]
    prefix = scoring.common_prefix(ids)
    assert piqa.llama_means() == pytest.approx(
        [piqa.choices[k].logprob_sum(prefix) / (len(ids[k]) - prefix) for k in range(2)]
    )
    # a sequence longer than the context keeps its continuation and loses the context's start
    (cut,) = scoring.score_items(ref, [items[0]], max_len=8)
    assert all(len(c.ids) == 8 for c in cut.choices) and cut.choices[0].ids[-1] == piqa.choices[0].ids[-1]


@pytest.fixture(scope="module")
def task_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tasks")
    made = {
        "hellaswag": rows.hellaswag_rows(ITEMS),
        "arc_easy": rows.arc_rows(ITEMS),
        "winogrande": rows.winogrande_rows(ITEMS),
        "piqa": rows.piqa_rows(ITEMS),
        "lambada": rows.lambada_rows(8),
    }
    return {name: rows.write_jsonl(folder / f"{name}.jsonl", found) for name, found in made.items()}


@requires_llama
def test_eval_tasks_agree_on_f32_and_flag_a_damaged_gguf(
    tmp_path: Path, tiny_model: TinyModel, task_files: dict[str, Path]
) -> None:
    data = tmp_path / "shards"
    write_data(data, tiny_model.tokenizer_dir, tokenizer_sha256(tiny_model.tokenizer_dir), tiny_corpus()[:40])
    f16 = convert(tiny_model.export_dir, tmp_path / "clean-f16.gguf", "f16")
    damaged = corrupt(f16, tmp_path / "model-f16.gguf", "output.weight", -1.0)  # every preference reversed
    spec = ",".join(f"{name}={path}" for name, path in task_files.items()) + ",heldout=val"
    predictions = tmp_path / "predictions.jsonl"
    code, output = run_cli(
        "eval", str(tiny_model.export_dir), str(tiny_model.gguf_path), str(damaged), "--data", str(data),
        "--min-kld-tokens", "1024", "--no-bench", "--out", str(tmp_path), "--tasks", spec,
        "--limit", str(ITEMS), "--predictions", str(predictions),
    )  # fmt: skip
    assert code == 1, output  # the damaged f16 also fails its KL-divergence gate
    report = read_back(tmp_path / "eval.json")
    bench = report["benchmarks"]
    tasks = {task["task"]: task for task in bench["tasks"]}
    assert list(tasks) == ["hellaswag", "arc_easy", "winogrande", "piqa", "lambada", "heldout"]
    assert bench["core_tasks"] == 6
    assert bench["core"] == pytest.approx(sum(t["centered"] for t in tasks.values()) / 6)
    for name, task in tasks.items():
        assert task["n"] == (8 if name == "lambada" else ITEMS)
        headline = task["accuracy_norm"] if task["headline"] == "accuracy_norm" else task["accuracy"]
        assert task["centered"] == pytest.approx((headline - task["chance"]) / (1 - task["chance"]))
    assert tasks["winogrande"]["accuracy_norm"] is None and tasks["winogrande"]["chance"] == 0.5
    assert tasks["lambada"]["ggufs"] == [] and "no greedy last-word mode" in tasks["lambada"]["llama_note"]
    modes = {name: {g["quant"]: g for g in task["ggufs"]} for name, task in tasks.items() if task["ggufs"]}
    assert {name: found["f32"]["mode"] for name, found in modes.items()} == {
        "hellaswag": "hellaswag", "arc_easy": "multiple-choice", "winogrande": "winogrande",
        "piqa": "multiple-choice", "heldout": "multiple-choice",
    }  # fmt: skip
    for name, found in modes.items():
        f32, bad = found["f32"], found["f16"]
        assert f32["agreement"] >= 0.95 and not f32["flagged"], (name, f32)
        assert f32["accuracy"] == pytest.approx(f32["pytorch_accuracy"], abs=0.05 + 1e-9)
        assert bad["agreement"] < 0.95 and bad["flagged"], (name, bad)
    # the predictions: one line per item and model, PyTorch's with their log-likelihoods
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    pytorch = [line for line in lines if line["model"] == "pytorch"]
    assert len(pytorch) == 4 * ITEMS + 8 + ITEMS
    arc0 = next(line for line in pytorch if line["task"] == "arc_easy" and line["index"] == 0)
    assert arc0["norm"] == "chars" and len(arc0["continuations"]) == len(arc0["loglik"]) == 3
    assert arc0["pred"] == max(range(3), key=lambda k: arc0["loglik"][k] / len(arc0["continuations"][k]))
    wino = next(line for line in pytorch if line["task"] == "winogrande")
    assert isinstance(wino["context"], list) and len(wino["context"]) == 2 and wino["norm"] == "sum"
    gguf = [line for line in lines if line["model"] == tiny_model.gguf_path.name]
    hellaswag_picks = [line["pred"] for line in gguf if line["task"] == "hellaswag"]
    assert len(hellaswag_picks) == ITEMS and set(hellaswag_picks) == {None}  # its output hides the picks
    wino_f32 = [line for line in gguf if line["task"] == "winogrande"]
    agree = tasks["winogrande"]["ggufs"][0]["agreement"]
    assert all(line["pred"] in (0, 1) for line in wino_f32) and agree >= 0.95
    # eval.md, the terminal and the chart
    md = (tmp_path / "eval.md").read_text()
    assert f"**CORE {bench['core']:.4f}**" in md and "| hellaswag | 48 |" in md
    assert (
        "f16" in md
        and "**FLAGGED**" in md
        and "flip more than 5% of PyTorch's choices: f16 on hellaswag" in md
    )
    assert "CORE" in output and "FLAGGED" in output
    assert (tmp_path / report["plots"]["benchmarks"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_tasks_are_usage_errors(tiny_model: TinyModel, tmp_path: Path) -> None:
    code, output = run_cli(
        "eval", str(tiny_model.export_dir), str(tiny_model.gguf_path), "--data", str(tmp_path),
        "--tasks", "boolq=x.jsonl",
    )  # fmt: skip
    assert code == 2 and "unknown task 'boolq'" in output
    code, output = run_cli(
        "eval", str(tiny_model.export_dir), str(tiny_model.gguf_path), "--data", str(tmp_path),
        "--tasks", "heldout=val", "--predictions", str(tmp_path / "no" / "p.jsonl"),
    )  # fmt: skip
    assert code == 2 and f"--predictions {tmp_path / 'no' / 'p.jsonl'}: no folder {tmp_path / 'no'}" in output
