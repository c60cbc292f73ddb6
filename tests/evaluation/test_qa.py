"""Question sets are read strictly; answers are scored by token-F1 in each search mode."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from common.chat import SearchResult
from evaluation.errors import EvalError
from evaluation.qa import QAItem, read_qa, score_qa, token_f1


def test_token_f1_by_hand() -> None:
    # "dog sleeps" vs "dog sleeps in sun" (articles and punctuation dropped): P = 2/2, R = 2/4, F1 = 2/3
    assert token_f1("The dog sleeps.", "The dog sleeps in the sun.") == pytest.approx(2 / 3)
    assert token_f1("Serialize obj to a JSON formatted str.", "serialize OBJ to JSON formatted str") == 1.0
    assert token_f1("Return the hyperbolic sine of z.", "Serialize obj to a JSON formatted str.") == 0.0
    assert token_f1("x y y", "y y y z") == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))


def test_read_jsonl_and_json(tmp_path: Path) -> None:
    records = [
        {"question": "What does json.dumps do?", "reference": "Serialize obj.", "id": "json.dumps"},
        {
            "question": "Q2?",
            "reference": "R2.",
            "documents": [{"title": "t", "url": "pydoc:t", "snippet": "s"}],
        },
    ]
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    as_json = tmp_path / "heldout.json"
    as_json.write_text(json.dumps({"names": ["json.dumps"], "qa": records}))
    expected = [
        QAItem("What does json.dumps do?", "Serialize obj.", "json.dumps", None),
        QAItem("Q2?", "R2.", None, (SearchResult("t", "pydoc:t", "s"),)),
    ]
    assert read_qa(jsonl) == expected and read_qa(as_json) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "q"}\n', r"qa.jsonl:1: reference must be a non-empty string"),
        ('{"question": "q", "reference": "r"}\nnot json\n', r"qa.jsonl:2: not JSON"),
        ('{"question": "", "reference": "r"}\n', r"qa.jsonl:1: question must be a non-empty string"),
        (
            '{"question": "q", "reference": "r", "documents": [{"title": "t"}]}\n',
            r"qa.jsonl:1: a document lacks 'snippet'",
        ),
        ("\n", r"qa.jsonl: no questions"),
    ],
)
def test_bad_question_sets_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(content)
    with pytest.raises(EvalError, match=message):
        read_qa(path)


class Index:
    """A document search over a dict, standing in for the user's document index in this unit test."""

    def __init__(self, passages: dict[str, str]) -> None:
        self.passages = passages

    def search(self, query: str, limit: int = 5) -> list[SearchResult]:
        return [SearchResult(k, f"pydoc:{k}", v) for k, v in self.passages.items() if k in query][:limit]


def test_modes_and_skips() -> None:
    items = [
        QAItem("What does json.dumps do?", "Serialize obj to a JSON formatted str."),
        QAItem("What does math.sqrt do?", "Return the square root of x."),
    ]
    seen: list[tuple[str, list[str]]] = []

    def reader(question: str, documents: Sequence[Any]) -> str:
        """Answers with its first document's text, or a fixed wrong answer without one."""
        seen.append((question, [d.title for d in documents]))
        return documents[0].content if documents else "I do not know."

    index = Index({"json.dumps": "Serialize obj to a JSON formatted str."})
    scores = score_qa(items, reader, ("off", "documents"), provider=index)
    off, docs = scores["off"].to_dict(), scores["documents"].to_dict()
    assert (off["asked"], off["skipped"], off["mean_f1"], off["exact_match"]) == (2, 0, 0.0, 0.0)
    assert (docs["asked"], docs["skipped"], docs["mean_f1"], docs["exact_match"]) == (1, 1, 1.0, 1.0)
    assert seen == [
        ("What does json.dumps do?", []),
        ("What does json.dumps do?", ["json.dumps"]),
        ("What does math.sqrt do?", []),
    ]
    assert docs["examples"] == [
        {
            "question": "What does json.dumps do?",
            "reference": "Serialize obj to a JSON formatted str.",
            "answer": "Serialize obj to a JSON formatted str.",
            "f1": 1.0,
        }
    ]
    with pytest.raises(EvalError, match="unknown QA mode"):
        score_qa(items, reader, ("web",))


def test_the_echoed_title_is_dropped_before_scoring(tmp_path: Path) -> None:
    """heldout.json's records (trainer.data.grounded) carry the title a grounded answer repeats first."""
    path = tmp_path / "heldout.json"
    record = {
        "id": "json.dumps",
        "question": "What does json.dumps do?",
        "reference": "Serialize obj.",
        "echo": "json.dumps:",
    }
    path.write_text(json.dumps({"names": ["json.dumps"], "qa": [record]}))
    (item,) = read_qa(path)
    assert item.echo == "json.dumps:"
    scores = score_qa([item], lambda question, documents: "json.dumps: Serialize obj.", ("off",))
    assert scores["off"].to_dict()["mean_f1"] == 1.0 and scores["off"].exact == 1
    assert scores["off"].examples[0]["answer"] == "json.dumps: Serialize obj."  # the raw answer is kept
