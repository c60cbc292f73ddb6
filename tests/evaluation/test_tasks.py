"""Benchmark task loaders on rows in each dataset's published schema, reading sources, and CORE."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation import core, tasks
from evaluation.errors import EvalError
from evaluation.tasks import Item

# Rows as the Hub's copies publish them (first validation rows of each, trimmed where noted)
HELLASWAG = {
    "ind": 24, "activity_label": "Roof shingle removal",
    "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
    "ctx": "A man is sitting on a roof. he",
    "endings": [
        "is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
        "is holding a rubik's cube.", "starts pulling up roofing on a roof.",
    ],
    "source_id": "activitynet~v_-JhWjGDPHMY", "split": "val", "split_type": "indomain", "label": "3",
}  # fmt: skip
WIKIHOW = {
    "activity_label": "Home and Garden", "ctx_a": "[header] How to clean a grill [title] Heat the grill.",
    "ctx_b": "[step] let it", "endings": ["cool [title] Scrub it.", "b", "c", "d"], "label": "0",
}  # fmt: skip
ARC_NUMERIC = {
    "id": "NYSEDREGENTS_2015_4_20", "question": "Which object is the best conductor of electricity?",
    "choices": {"text": ["a wax crayon", "a plastic spoon", "a rubber eraser", "an iron nail"],
                "label": ["1", "2", "3", "4"]},
    "answerKey": "4",
}  # fmt: skip
ARC_THREE = {
    "id": "Mercury_7", "question": "What do plants need?",
    "choices": {"text": ["light", "sand", "noise"], "label": ["A", "B", "C"]}, "answerKey": "A",
}  # fmt: skip
ARC_FIVE = {
    "id": "Mercury_8", "question": "Which is a gas?",
    "choices": {"text": ["ice", "steam", "wood", "iron", "salt"], "label": ["A", "B", "C", "D", "E"]},
    "answerKey": "B",
}  # fmt: skip
WINOGRANDE = {
    "sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
    "option1": "Sarah", "option2": "Maria", "answer": "2",
}  # fmt: skip
PIQA = {"goal": "How do I ready a guinea pig cage for it's new occupants?", "sol1": "Provide the guinea pig "
        "with a cage full of a few inches of bedding made of ripped paper strips.",
        "sol2": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material.",
        "label": 0}  # fmt: skip
OPENBOOKQA = {
    "id": "7-980", "question_stem": "The sun is responsible for",
    "choices": {"text": ["puppies learning new tricks", "children growing up and getting old",
                         "flowers wilting in a vase", "plants sprouting, blooming and wilting"],
                "label": ["A", "B", "C", "D"]},
    "answerKey": "D",
}  # fmt: skip
LAMBADA = {"text": "he was the one who had brought her here , and now he was leaving her with a stranger"}
MMLU = {
    "question": "Find the degree for the given field extension Q(sqrt(2)) over Q.",
    "subject": "abstract_algebra", "choices": ["0", "4", "2", "6"], "answer": 2,
}  # fmt: skip


def test_hellaswag_is_lm_evals_prompt() -> None:
    item = tasks.hellaswag("hellaswag", HELLASWAG, 0)
    assert item.contexts == ("Roof shingle removal: A man is sitting on a roof. He",)
    assert item.continuations[3] == " starts pulling up roofing on a roof."
    assert item.gold == 3 and item.kind == "choice" and item.choices == 4
    wikihow = tasks.hellaswag("hellaswag", WIKIHOW, 1)
    assert wikihow.contexts == (
        "Home and Garden: How to clean a grill. Heat the grill. let it",
    )  # capitalize() sees "["
    assert wikihow.continuations[0] == " cool. Scrub it."


def test_arc_with_numeric_labels_and_three_or_five_choices() -> None:
    numeric = tasks.arc("arc_easy", ARC_NUMERIC, 0)
    assert numeric.contexts == ("Question: Which object is the best conductor of electricity?\nAnswer:",)
    assert numeric.continuations == (" a wax crayon", " a plastic spoon", " a rubber eraser", " an iron nail")
    assert numeric.gold == 3
    assert tasks.arc("arc_easy", ARC_THREE, 1).choices == 3 and tasks.arc("arc_easy", ARC_THREE, 1).gold == 0
    five = tasks.arc("arc_challenge", ARC_FIVE, 2)
    assert five.choices == 5 and five.gold == 1
    with pytest.raises(
        EvalError, match=r"arc_easy row 3: answerKey 'E' is not among the labels \['A', 'B', 'C'\]"
    ):
        tasks.arc("arc_easy", {**ARC_THREE, "answerKey": "E"}, 3)


def test_winogrande_fills_the_blank_and_scores_the_rest() -> None:
    item = tasks.winogrande("winogrande", WINOGRANDE, 0)
    assert item.contexts == (
        "Sarah was a much better surgeon than Maria so Sarah",
        "Sarah was a much better surgeon than Maria so Maria",
    )
    assert item.continuations == (" always got the easier cases.",)
    assert item.gold == 1 and item.kind == "partial" and item.choices == 2
    assert item.pair(1) == (item.contexts[1], " always got the easier cases.")
    with pytest.raises(EvalError, match="exactly one '_' blank"):
        tasks.winogrande("winogrande", {**WINOGRANDE, "sentence": "no blank here"}, 1)


def test_piqa_openbookqa_lambada_mmlu() -> None:
    piqa = tasks.piqa("piqa", PIQA, 0)
    assert piqa.contexts == ("Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",)
    assert piqa.continuations[1].startswith(" Provide the guinea pig") and piqa.gold == 0
    obqa = tasks.openbookqa("openbookqa", OPENBOOKQA, 0)
    assert obqa.contexts == ("The sun is responsible for",) and obqa.gold == 3
    assert obqa.continuations[3] == " plants sprouting, blooming and wilting"
    lam = tasks.lambada("lambada", LAMBADA, 0)
    assert lam.contexts == ("he was the one who had brought her here , and now he was leaving her with a",)
    assert lam.continuations == (" stranger",) and lam.kind == "greedy"
    mmlu = tasks.mmlu("mmlu", MMLU, 0)
    assert mmlu.contexts == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find the degree for the given field extension Q(sqrt(2)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:",
    )
    assert mmlu.continuations == (" A", " B", " C", " D") and mmlu.gold == 2


def test_sources_jsonl_parquet_limit_and_errors(tmp_path: Path) -> None:
    jsonl = tmp_path / "arc.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in (ARC_NUMERIC, ARC_THREE, ARC_FIVE)))
    items = tasks.load_items("arc_easy", str(jsonl), limit=2)
    assert [i.gold for i in items] == [3, 0] and [i.index for i in items] == [0, 1]
    parquet = tmp_path / "piqa.parquet"
    pq.write_table(pa.Table.from_pylist([PIQA, {**PIQA, "label": 1}]), parquet)
    assert [i.gold for i in tasks.load_items("piqa", str(parquet))] == [0, 1]
    with pytest.raises(EvalError, match=r"missing.jsonl does not exist"):
        tasks.load_items("piqa", str(tmp_path / "missing.jsonl"))
    with pytest.raises(
        EvalError, match=r"row 0 is not in the hellaswag schema \(KeyError: 'activity_label'\)"
    ):
        tasks.load_items("hellaswag", str(jsonl))
    with pytest.raises(EvalError, match=r"not a table source"):
        tasks.load_items("piqa", str(tmp_path))  # a folder of text is not a table
    (tmp_path / "rows.csv").write_text("a,b\n")
    with pytest.raises(EvalError, match=r"rows.csv: not a table source"):
        tasks.load_items("piqa", str(tmp_path / "rows.csv"))


def test_hf_sources_read_a_local_dataset_folder_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "winogrande"
    folder.mkdir()
    (folder / "validation.jsonl").write_text(json.dumps(WINOGRANDE) + "\n")
    (folder / "train.jsonl").write_text(json.dumps({**WINOGRANDE, "answer": "1"}) + "\n")
    assert tasks.load_items("winogrande", f"hf:{folder}?split=train")[0].gold == 0
    with pytest.raises(EvalError, match=r"cannot reach the Hugging Face Hub for 'nobody/no-such-dataset'"):
        tasks.load_items("winogrande", "hf:nobody/no-such-dataset")


def test_parse_tasks(tmp_path: Path) -> None:
    local = tmp_path / "a.jsonl"
    local.write_text("")
    assert tasks.parse_tasks(
        f"hellaswag={local}, arc_easy=hf:allenai/ai2_arc?config=ARC-Easy,heldout=val"
    ) == {
        "hellaswag": str(local),
        "arc_easy": "hf:allenai/ai2_arc?config=ARC-Easy",
        "heldout": "val",
    }
    with pytest.raises(
        EvalError, match=r"--tasks piqa=missing.jsonl: source 'missing.jsonl': missing.jsonl does not exist"
    ):
        tasks.parse_tasks("piqa=missing.jsonl")
    assert tasks.parse_tasks("") == {}
    with pytest.raises(EvalError, match="unknown task 'boolq'"):
        tasks.parse_tasks("boolq=x.jsonl")
    with pytest.raises(EvalError, match="expected NAME=SOURCE"):
        tasks.parse_tasks("piqa")
    with pytest.raises(EvalError, match="piqa given twice"):
        tasks.parse_tasks(f"piqa={local},piqa={local}")


def test_heldout_cloze_rows() -> None:
    text = " ".join(f"Sentence number {n} has exactly eight words {n}." for n in range(6)) + " Too short."
    text += " Sentence number 6 has exactly eight words 5."  # the same ending as 5: never both in one row
    rows = list(tasks.heldout_rows(text, 5))
    assert len(rows) == 5 and [r["label"] for r in rows] == [0, 1, 2, 3, 0]
    assert rows[1] == {
        "context": "Sentence number 1 has",
        "choices": ["exactly eight words 2.", "exactly eight words 1.", "exactly eight words 3.",
                    "exactly eight words 4."],
        "label": 1,
    }  # fmt: skip
    assert tasks.choice("heldout", rows[1], 1) == Item(
        "heldout", 1, ("Sentence number 1 has",), tuple(" " + c for c in rows[1]["choices"]), 1
    )
    everything = list(tasks.heldout_rows(text, 100))
    assert [r["context"] for r in everything] == [f"Sentence number {n} has" for n in range(7)]
    assert all(len(set(r["choices"])) == 4 for r in everything)
    assert list(tasks.heldout_rows("Only one sentence of eight words is here.", 5)) == []


def test_core_is_the_centred_mean() -> None:
    assert core.centered(0.625, 0.25) == 0.5
    assert core.centered(0.5, 0.5) == 0.0 and core.centered(0.0, 0.0) == 0.0
    assert core.core([0.5, 0.0, -0.1]) == pytest.approx(0.4 / 3)
    assert core.core([]) is None
    assert core.flagged(0.94) and not core.flagged(0.95)
