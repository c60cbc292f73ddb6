"""`local:python-grounded`: SFT conversations that answer from retrieved documents, and the held-out QA set.

Each conversation's system turn holds three search results rendered exactly as the backend renders
DOCUMENTS results (`chakor.documents.render.with_sources` under the one `SYSTEM_PROMPT`), built from
the same passages the document index stores (`chakor.documents.passages.builtin_passages`). The answer
echoes the title it found, then copies that result's snippet: "json.dumps: Serialize ``obj`` ...".

Copying must be the only way to lower the loss, so in SHUFFLE_FRACTION of the conversations every
result shows another API's snippet under its title (the pairing is permuted per conversation): a
model that memorised "json.dumps -> Serialize ..." is wrong there, a model that reads is right.
About ABSENT_FRACTION of the conversations have no result about the asked API (so the top result is
irrelevant) and the answer says so; elsewhere the right result is first in TOP_FRACTION of them.

HELDOUT_PERCENT of the documented members are held out by a hash of their name (the same set on every
machine and seed): they never appear in a conversation, not even as a distractor or inside another
snippet, and become the QA set `heldout.json` (`{"qa": [{"id", "question", "reference", ...}]}`,
docs/interfaces.md "QA set") that `chakor eval` asks with DOCUMENTS search.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chakor.documents.passages import SNIPPET_CHARS, builtin_passages
from chakor.documents.render import DOCUMENT_RESULTS, SearchMode, with_sources
from chakor.settings import SYSTEM_PROMPT
from trainer.tokenizer.chat import Message

PYTHON_GROUNDED = "local:python-grounded"
HELDOUT_FILE = "heldout.json"
HELDOUT_PERCENT = 15  # the probe held out 15% of the names
MAX_SNIPPET_CHARS = SNIPPET_CHARS  # snippets the index did not have to cut
MIN_SNIPPET_CHARS = 20
VARIANTS_PER_FACT = 8  # different contexts per API: enough examples for ~2,600 steps of batch 16
SHUFFLE_FRACTION = 0.8
ABSENT_FRACTION = 0.12
TOP_FRACTION = 0.6
PLAIN_FRACTION = 0.1  # conversations without search, so a question asked with search OFF still gets a docstring-style answer
QUESTIONS = (
    "What does {name} do?",
    "Can you explain {name}?",
    "What is {name} for?",
    "Explain {name} in one sentence.",
)
MODULE_QUESTIONS = ("What is the {name} module for?", "What does the {name} module provide?")
QA_QUESTION = "What does {name} do?"
ABSENT_ANSWER = "The documents do not say what {name} does."


@dataclass(frozen=True)
class Fact:
    """A documented API as the index stores it: its passage's title, url and snippet."""

    name: str
    url: str
    snippet: str
    module: str
    is_module: bool

    @property
    def title(self) -> str:
        return self.name

    @property
    def content(self) -> str:
        return self.snippet


@dataclass(frozen=True)
class Shown:
    """One search result as a conversation shows it (a title with possibly another API's snippet)."""

    title: str
    url: str
    content: str


def is_held_out(name: str) -> bool:
    """Members (`module.name`) whose SHA-256 falls in the first HELDOUT_PERCENT of 100 buckets."""
    if "." not in name or name in _module_names():
        return False
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 100 < HELDOUT_PERCENT


@lru_cache(maxsize=1)
def _module_names() -> frozenset[str]:
    from trainer.data import builtin

    return frozenset(builtin.DOC_MODULES)


def _good(snippet: str) -> bool:
    return (
        MIN_SNIPPET_CHARS <= len(snippet) <= MAX_SNIPPET_CHARS
        and snippet.endswith(".")
        and "-->" not in snippet
    )


@lru_cache(maxsize=1)
def facts() -> tuple[Fact, ...]:
    """Modules and members of the built-in documentation whose snippet is a short sentence."""
    modules = _module_names()
    found = []
    for passage in builtin_passages():
        if not passage.url.startswith("pydoc:") or passage.url.startswith("pydoc:topic/"):
            continue
        if not _good(passage.snippet) or passage.snippet.startswith(passage.title.rsplit(".", 1)[-1]):
            continue
        is_module = passage.title in modules
        module = passage.title if is_module else passage.title.rsplit(".", 1)[0]
        found.append(Fact(passage.title, passage.url, passage.snippet, module, is_module))
    return tuple(found)


def _mentions(text: str, names: frozenset[str]) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", text) for n in names if n in text)


def split() -> tuple[list[Fact], list[Fact]]:
    """(facts SFT may use, held-out facts). Usable facts never mention a held-out name."""
    held = [f for f in facts() if is_held_out(f.name)]
    names = frozenset(f.name for f in held)
    usable = [f for f in facts() if f.name not in names and not _mentions(f.snippet, names)]
    return usable, held


def _results(fact: Fact, pool: list[Fact], rng: random.Random) -> tuple[list[Shown], bool]:
    """DOCUMENT_RESULTS results for a question about `fact`; whether one of them is about it."""
    same_module = [f for f in pool if f.module == fact.module and f.name != fact.name]
    others: list[Fact] = []
    if same_module:  # a near miss, as real retrieval finds: json.dump beside json.dumps
        others.append(rng.choice(same_module))
    while len(others) < DOCUMENT_RESULTS:
        candidate = rng.choice(pool)
        if candidate.name != fact.name and candidate not in others:
            others.append(candidate)
    present = rng.random() >= ABSENT_FRACTION
    chosen = others[:]
    if present:
        chosen = others[: DOCUMENT_RESULTS - 1]
        place = 0 if rng.random() < TOP_FRACTION else rng.randrange(1, DOCUMENT_RESULTS)
        chosen.insert(place, fact)
    snippets = [f.snippet for f in chosen]
    if rng.random() < SHUFFLE_FRACTION:  # every title gets another API's snippet
        snippets = [f.snippet for f in rng.sample(pool, len(chosen))]
    return [Shown(f.title, f.url, s) for f, s in zip(chosen, snippets, strict=True)], present


def conversation(fact: Fact, pool: list[Fact], rng: random.Random) -> list[Message]:
    """One grounded conversation about `fact` (or, PLAIN_FRACTION of the time, one without search)."""
    question = rng.choice(MODULE_QUESTIONS if fact.is_module else QUESTIONS).format(name=fact.name)
    if rng.random() < PLAIN_FRACTION:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"{fact.name}: {fact.snippet}"},
        ]
    shown, present = _results(fact, pool, rng)
    if present:
        hit = next(s for s in shown if s.title == fact.name)
        answer = f"{hit.title}: {hit.content}"
    else:
        answer = ABSENT_ANSWER.format(name=fact.name)
    return [
        {"role": "system", "content": with_sources(SYSTEM_PROMPT, shown, SearchMode.DOCUMENTS)},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]


def python_grounded(seed: int, variants: int = VARIANTS_PER_FACT) -> Iterator[list[Message]]:
    """`variants` conversations per usable fact, in a seeded order (each from its own Random)."""
    usable, _ = split()
    jobs = [(fact, n) for fact in usable for n in range(variants)]
    random.Random(seed).shuffle(jobs)
    for fact, n in jobs:
        yield conversation(fact, usable, random.Random(f"{seed}:{fact.name}:{n}"))


def heldout_report() -> dict[str, Any]:
    """`heldout.json`: the held-out names and their QA set (question, reference snippet, the echo to drop)."""
    _, held = split()
    return {
        "rule": f"sha256(name) % 100 < {HELDOUT_PERCENT}, documented members only",
        "names": sorted(f.name for f in held),
        "qa": [
            {
                "id": f.name,
                "question": QA_QUESTION.format(name=f.name),
                "reference": f.snippet,
                "echo": f"{f.name}:",
            }
            for f in sorted(held, key=lambda f: f.name)
        ],
    }
