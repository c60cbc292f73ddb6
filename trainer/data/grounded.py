"""`local:python-grounded`: SFT conversations that answer from retrieved documents, and the held-out QA set.

Each conversation's system turn holds one to three search results rendered exactly as the backend renders
DOCUMENTS results (`common.chat.with_sources` under the one `SYSTEM_PROMPT`), built from
the same passages the document index stores (`documents.passages.builtin_passages`). The answer
echoes the title it found, then copies that result's snippet: "json.dumps: Serialize ``obj`` ...".

Copying must be the only way to lower the loss. In SHUFFLE_FRACTION of the conversations no title shows
its own snippet: each shows a sentence of the documentation or, SPLICE_FRACTION of the time, the head of
one sentence joined to the tail of another, so that a model that memorised "json.dumps -> Serialize ..."
or the sentences themselves is wrong there and only a model that reads is right (with the ~600 snippets
of the usable APIs as the only answers, SFT memorised them: held-out F1 0.30; with these, 0.64). In
RENAME_FRACTION of those the members also get made-up names, so the echo is copied, not recalled.
About ABSENT_FRACTION of the conversations have no result about the asked API and the answer says so;
elsewhere the right result is first in TOP_FRACTION of them, else anywhere.

HELDOUT_PERCENT of the documented members are held out by a hash of their name (the same set on every
machine and seed): they never appear in a conversation, not even as a distractor, a made-up name or
inside another snippet, and become the QA set `heldout.json` (`{"qa": [{"id", "question", "reference",
...}]}`, docs/interfaces.md "QA set") that `chakor eval` asks with DOCUMENTS search.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from common.chat import SYSTEM_PROMPT, Message, SearchMode, SearchResult, with_sources
from documents.passages import SNIPPET_CHARS, builtin_passages
from documents.stdlib import DOC_MODULES

PYTHON_GROUNDED = "local:python-grounded"
HELDOUT_FILE = "heldout.json"
HELDOUT_PERCENT = 15  # the probe held out 15% of the names
MAX_SNIPPET_CHARS = SNIPPET_CHARS  # snippets the index did not have to cut
MIN_SNIPPET_CHARS = 20
# 24 contexts per API (14k conversations): the quickstart's 1,500 SFT steps see each about 1.3 times, so
# contexts are read rather than remembered (8, the first recipe, meant 6 passes over 4.8k conversations).
VARIANTS_PER_FACT = 24
SHUFFLE_FRACTION = 0.8
SPLICE_FRACTION = 0.5
RENAME_FRACTION = (
    0.5  # measured neutral on held-out F1 (0.644 vs 0.647 without at 1,800 steps), kept for the echo
)
# At a 256-token context the backend and the eval keep 128 tokens for the answer, which leaves room for
# two results of three on average (106 of 264 held-out results dropped), so SFT shows 1-3 results.
RESULT_COUNTS = (1, 2, 2, 3, 3)
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


def is_held_out(name: str) -> bool:
    """Members (`module.name`) whose SHA-256 falls in the first HELDOUT_PERCENT of 100 buckets."""
    if "." not in name or name in _module_names():
        return False
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 100 < HELDOUT_PERCENT


@lru_cache(maxsize=1)
def _module_names() -> frozenset[str]:
    return frozenset(DOC_MODULES)


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


@lru_cache(maxsize=1)
def sentences() -> tuple[str, ...]:
    """Every sentence of the built-in documentation that may stand in a snippet and names no held-out API."""
    _, held = split()
    names = frozenset(f.name for f in held)
    found: dict[str, None] = {}
    for passage in builtin_passages():
        if passage.title in names:
            continue
        for paragraph in passage.text.split("\n\n"):
            for sentence in re.split(r"(?<=\.)\s+(?=[A-Z])", " ".join(paragraph.split())):
                if _good(sentence) and ">>>" not in sentence and not _mentions(sentence, names):
                    found[sentence] = None
    return tuple(found)


def _novel(rng: random.Random) -> str:
    """A snippet no memory can complete: the head of one sentence and the tail of another."""
    pool = sentences()
    while True:
        head, tail = rng.choice(pool).split(), rng.choice(pool).split()
        text = " ".join(head[: rng.randrange(1, len(head))] + tail[rng.randrange(1, len(tail)) :])
        if _good(text):
            return text


def _snippet(pool: list[Fact], rng: random.Random) -> str:
    """A snippet for a title that is not its own: spliced, any documentation sentence, or another API's."""
    if rng.random() < SPLICE_FRACTION:
        return _novel(rng)
    return rng.choice(sentences()) if rng.random() < 0.5 else rng.choice(pool).snippet


def _results(fact: Fact, pool: list[Fact], rng: random.Random) -> tuple[list[SearchResult], str | None]:
    """RESULT_COUNTS results for a question about `fact`, and the title it has among them (None: absent)."""
    count = rng.choice(RESULT_COUNTS)
    same_module = [f for f in pool if f.module == fact.module and f.name != fact.name]
    others: list[Fact] = []
    if same_module:  # a near miss, as real retrieval finds: json.dump beside json.dumps
        others.append(rng.choice(same_module))
    while len(others) < count:
        candidate = rng.choice(pool)
        if candidate.name != fact.name and candidate not in others:
            others.append(candidate)
    present = rng.random() >= ABSENT_FRACTION
    chosen = others[:count]
    if present:
        chosen = others[: count - 1]
        place = 0 if rng.random() < TOP_FRACTION else rng.randrange(0, count)
        chosen.insert(place, fact)
    snippets = [f.snippet for f in chosen]
    titles = [f.name for f in chosen]
    if rng.random() < SHUFFLE_FRACTION:  # every title shows a snippet that is not its own
        snippets = [_snippet(pool, rng) for _ in chosen]
        if rng.random() < RENAME_FRACTION:
            titles = _renamed(chosen, rng)
    shown = [SearchResult(t, f.url, s) for t, f, s in zip(titles, chosen, snippets, strict=True)]
    return shown, (titles[chosen.index(fact)] if present else None)


def _renamed(chosen: list[Fact], rng: random.Random) -> list[str]:
    """Each member under its own module with another member's name (never a held-out name); modules keep theirs."""
    titles: list[str] = []
    for fact in chosen:
        title = fact.name
        while not fact.is_module and (title == fact.name or title in titles or is_held_out(title)):
            title = f"{fact.module}.{rng.choice(_member_names())}"
        titles.append(title)
    return titles


@lru_cache(maxsize=1)
def _member_names() -> tuple[str, ...]:
    return tuple(sorted({f.name.rsplit(".", 1)[1] for f in split()[0] if not f.is_module}))


def conversation(fact: Fact, pool: list[Fact], rng: random.Random) -> list[Message]:
    """One grounded conversation about `fact` (or, PLAIN_FRACTION of the time, one without search)."""
    template = rng.choice(MODULE_QUESTIONS if fact.is_module else QUESTIONS)
    if rng.random() < PLAIN_FRACTION:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": template.format(name=fact.name)},
            {"role": "assistant", "content": f"{fact.name}: {fact.snippet}"},
        ]
    shown, title = _results(fact, pool, rng)
    if title is not None:
        hit = next(s for s in shown if s.title == title)
        question, answer = template.format(name=title), f"{hit.title}: {hit.content}"
    else:
        question, answer = template.format(name=fact.name), ABSENT_ANSWER.format(name=fact.name)
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
