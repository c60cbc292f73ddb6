"""Grounded SFT data: rendered as the backend renders DOCUMENTS results; held-out functions never in it."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from common.chat import SYSTEM_PROMPT, SearchMode, SearchResult, with_sources
from documents.index import DocumentIndex
from trainer.data import grounded
from trainer.data.sft import build_sft


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sft-grounded")
    return out, build_sft(grounded.PYTHON_GROUNDED, out)


def test_held_out_functions_never_appear_in_sft_data(built: tuple[Path, dict]) -> None:
    out, report = built
    heldout = json.loads((out / grounded.HELDOUT_FILE).read_text())
    names = heldout["names"]
    assert len(names) >= 50 and names == sorted(names)
    assert [q["id"] for q in heldout["qa"]] == names
    text = (out / "sft.jsonl").read_text()
    words = {w.rstrip(".") for w in re.findall(r"[\w.]+", text)}
    leaked = sorted(words.intersection(names))
    assert leaked == []
    # the same names on every run and seed: the hold-out is a hash of the name
    assert grounded.is_held_out("json.dumps") is (names.count("json.dumps") == 1)
    assert report["conversations"] == len(grounded.split()[0]) * grounded.VARIANTS_PER_FACT


def test_conversations_render_documents_as_the_backend_does(built: tuple[Path, dict]) -> None:
    out, _ = built
    rows = [json.loads(line)["messages"] for line in (out / "sft.jsonl").read_text().splitlines()]
    grounded_rows = [r for r in rows if "\nDocuments (cite them as [1], [2], ...):\n" in r[0]["content"]]
    plain = [r for r in rows if r[0]["content"] == SYSTEM_PROMPT]
    assert len(grounded_rows) + len(plain) == len(rows) and 0.05 < len(plain) / len(rows) < 0.15
    counts = []
    for system, user, assistant in grounded_rows[:200]:
        lines = system["content"].split("\n")[3:]
        shown = [re.fullmatch(r"\[(\d)\] (\S+): (.+)", line) for line in lines]
        assert [m.group(1) for m in shown if m] == [str(n) for n in range(1, len(lines) + 1)], system[
            "content"
        ]
        counts.append(len(lines))
        sources = [SearchResult(m.group(2), "", m.group(3)) for m in shown if m]
        assert system["content"] == with_sources(SYSTEM_PROMPT, sources, SearchMode.DOCUMENTS)
        asked = _asked(user["content"])
        match = next((s for s in sources if s.title == asked), None)
        if match is None:
            assert assistant["content"] == grounded.ABSENT_ANSWER.format(name=asked)
        else:
            assert assistant["content"] == f"{asked}: {match.content}"
    absent = sum(r[2]["content"].startswith("The documents do not say") for r in grounded_rows)
    assert 0.05 < absent / len(grounded_rows) < 0.2
    # as many results as the eval and the backend keep in 128 prompt tokens: mostly 2 or 3, sometimes 1
    assert sorted(set(counts)) == sorted(set(grounded.RESULT_COUNTS)) == [1, 2, 3]


def test_shuffled_snippets_are_sentences_or_splices_no_memory_completes() -> None:
    usable, held = grounded.split()
    pool = set(grounded.sentences())
    assert len(pool) > 3 * len(usable)  # far more snippets than APIs: a pairing cannot be memorised
    rng = random.Random(0)
    spliced = [grounded._novel(rng) for _ in range(200)]
    assert all(grounded._good(text) for text in spliced)
    assert sum(text not in pool for text in spliced) > 150
    names = frozenset(f.name for f in held)
    assert not any(grounded._mentions(text, names) for text in spliced)


def test_snippets_are_the_index_snippets(tmp_path: Path) -> None:
    index = DocumentIndex(tmp_path / "index")
    index.add("local:python-docs")
    usable, held = grounded.split()
    members = [f for f in usable if not f.is_module]
    for fact in (members[0], members[-1], held[0]):
        hit = index.search(f"What does {fact.name} do?", 3)[0]
        assert (hit.title, hit.url, hit.content) == (fact.name, fact.url, fact.snippet)


def test_the_data_is_deterministic() -> None:
    first = list(grounded.python_grounded(seed=3, variants=1))
    assert first == list(grounded.python_grounded(seed=3, variants=1))
    assert first != list(grounded.python_grounded(seed=4, variants=1))


def _asked(question: str) -> str:
    """The API a question names, read back through the question templates."""
    for template in (*grounded.QUESTIONS, *grounded.MODULE_QUESTIONS):
        pattern = re.escape(template).replace(re.escape("{name}"), r"(\S+)")
        found = re.fullmatch(pattern, question)
        if found:
            return found.group(1)
    raise AssertionError(f"no template asks {question!r}")
