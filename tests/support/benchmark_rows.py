"""Benchmark rows in each dataset's published Hugging Face schema, made from the test corpus's sentences.

The published sets are not downloaded in tests; these rows have the same fields and types, so the loaders,
the scorer and the llama-perplexity inputs see what the real sets give them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.support.tiny_model import tiny_corpus


def sentences(count: int, skip: int = 0) -> list[list[str]]:
    """`count` plain sentences of 8 to 30 words (no quotes, commas, underscores or brackets) from the corpus."""
    found = []
    for text in tiny_corpus():
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            words = sentence.split()
            if 8 <= len(words) <= 30 and not re.search(r"[\"',_\[\]\n]", sentence):
                found.append(words)
    return found[skip : skip + count]


def hellaswag_rows(count: int) -> list[dict[str, Any]]:
    pool = sentences(count + 3)
    rows = []
    for i in range(count):
        words = pool[i]
        endings = [" ".join(pool[i + k][len(pool[i + k]) // 2 :]) for k in range(4)]
        gold = i % 4
        endings[0], endings[gold] = endings[gold], endings[0]
        half = len(words) // 2
        rows.append({
            "ind": i, "activity_label": "Python", "ctx_a": " ".join(words[: half // 2]),
            "ctx_b": " ".join(words[half // 2 : half]), "ctx": " ".join(words[:half]), "endings": endings,
            "source_id": f"pydoc~{i}", "split": "val", "split_type": "indomain", "label": str(gold),
        })  # fmt: skip
    return rows


def arc_rows(count: int) -> list[dict[str, Any]]:
    """ARC rows with 3, 4 or 5 choices; every third row labelled "1", "2", ... as some ARC rows are."""
    pool = sentences(count + 5, skip=7)
    rows = []
    for i in range(count):
        n = 3 + i % 3
        labels = [str(k + 1) for k in range(n)] if i % 3 == 0 else list("ABCDE"[:n])
        texts = [" ".join(pool[i + k][-3:]) for k in range(n)]
        gold = i % n
        texts[0], texts[gold] = texts[gold], texts[0]
        rows.append({
            "id": f"Mercury_{i}", "question": " ".join(pool[i][:-3]) + "?",
            "choices": {"text": texts, "label": labels}, "answerKey": labels[gold],
        })  # fmt: skip
    return rows


def winogrande_rows(count: int) -> list[dict[str, Any]]:
    pool = sentences(count, skip=3)
    rows = []
    for i, words in enumerate(pool):
        blank = len(words) // 3
        other = pool[(i + 1) % len(pool)][blank]
        right = words[blank]
        options = (right, other) if i % 2 == 0 else (other, right)
        sentence = " ".join([*words[:blank], "_", *words[blank + 1 :]])
        rows.append(
            {"sentence": sentence, "option1": options[0], "option2": options[1], "answer": str(1 + i % 2)}
        )
    return rows


def piqa_rows(count: int) -> list[dict[str, Any]]:
    pool = sentences(count + 1, skip=11)
    return [
        {
            "goal": " ".join(pool[i][: len(pool[i]) // 2]),
            "sol1": " ".join(pool[i + i % 2][len(pool[i + i % 2]) // 2 :]),
            "sol2": " ".join(pool[i + 1 - i % 2][len(pool[i + 1 - i % 2]) // 2 :]),
            "label": i % 2,
        }
        for i in range(count)
    ]


def lambada_rows(count: int) -> list[dict[str, Any]]:
    return [{"text": " ".join(words)} for words in sentences(count, skip=5)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
