"""`chakor data sft`: multi-turn chat JSONL for supervised fine-tuning.

Output: `DIR/sft.jsonl`, one `{"messages": [{"role", "content"}, ...]}` per line, every conversation
validated with the chat format's own checks, and `DIR/report.json` (counts, skipped reasons and row numbers).
`--source` is a built-in set or any table spec of sources.py (JSONL, parquet, `hf:`), in one of the three
shapes chat_sources.py reads.

`local:python-qa` builds grounded Q/A conversations from standard-library docstrings: the answer to
"What does json.dumps do?" is the first paragraph of `json.dumps.__doc__`; about a third of the
conversations add a follow-up turn ("How do I call it?" -> the signature). Deterministic for a seed.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.chat import SYSTEM_PROMPT, Message
from documents import stdlib
from trainer.data import grounded
from trainer.data.chat_sources import read_conversations
from trainer.data.sources import MAX_REPORTED_LINES, SourceError, parse_source

SFT_FILE = "sft.jsonl"
PYTHON_QA = "local:python-qa"
MAX_ANSWER_CHARS = 600
QUESTIONS = (
    "What does {name} do?",
    "Can you explain {name}?",
    "What is {name} for?",
    "Explain {name} in one sentence.",
)
FOLLOW_UPS = ("How do I call it?", "What arguments does it take?", "What is its signature?")
MODULE_QUESTIONS = ("What is the {name} module for?", "What does the {name} module provide?")


@dataclass
class SftReport:
    """What `build_sft` wrote and skipped."""

    conversations: int = 0
    turns: int = 0
    skipped: dict[str, list[int]] = field(default_factory=dict)
    skipped_count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, line_number: int) -> None:
        self.skipped_count += 1
        self.reasons[reason] += 1
        lines = self.skipped.setdefault(reason, [])
        if len(lines) < MAX_REPORTED_LINES:
            lines.append(line_number)


def _facts() -> list[tuple[str, str, str, bool]]:
    """`(qualified name, summary, signature, is_module)` of documented standard-library APIs."""
    facts = []
    for module_name in stdlib.DOC_MODULES:
        module = stdlib.import_doc_module(module_name)
        if module is None:
            continue
        summary = stdlib.summary_of(module)
        if summary:
            facts.append((module_name, summary, "", True))
        for name, member in stdlib.public_members(module):
            if hasattr(module, f"__{name}__"):  # a replaceable hook such as sys.excepthook
                continue
            summary = stdlib.summary_of(member)
            if _good_answer(name, member, summary):
                signature = stdlib.signature(f"{module_name}.{name}", member)
                known = "" if signature.endswith("(...)") else signature
                facts.append((f"{module_name}.{name}", summary, known, False))
    return facts


def _good_answer(name: str, member: object, summary: str) -> bool:
    """A real one-paragraph description: the member's own docstring, not a signature line."""
    own_doc = vars(member).get("__doc__") if isinstance(member, type) else getattr(member, "__doc__", None)
    return (
        bool(own_doc)
        and 20 <= len(summary) <= MAX_ANSWER_CHARS
        and summary.endswith(".")
        and "-->" not in summary
        and not summary.startswith(name)
    )


def python_qa(seed: int, limit: int | None = None) -> Iterator[list[Message]]:
    """Grounded Q/A conversations about the standard library, in a seeded order.

    Each conversation's choices come from its own `Random(f"{seed}:{name}")`, so a member that one
    process lacks (say, a hook another library replaced) changes nothing else.
    """
    facts = sorted(_facts(), key=lambda fact: random.Random(f"{seed}:{fact[0]}").random())
    for name, summary, signature, is_module in facts[:limit]:
        rng = random.Random(f"{seed}:{name}:turns")
        messages: list[Message] = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": SYSTEM_PROMPT})
        template = rng.choice(MODULE_QUESTIONS if is_module else QUESTIONS)
        messages.append({"role": "user", "content": template.format(name=name)})
        messages.append({"role": "assistant", "content": summary})
        if signature and rng.random() < 0.4:
            messages.append({"role": "user", "content": rng.choice(FOLLOW_UPS)})
            messages.append({"role": "assistant", "content": f"`{signature}`"})
        yield messages


def _from_table(spec: str, report: SftReport) -> Iterator[list[Message]]:
    for number, conversation in read_conversations(parse_source(spec)):
        if isinstance(conversation, str):
            report.skip(conversation, number)
        else:
            yield conversation


def build_sft(source: str, out_dir: Path, seed: int = 0, limit: int | None = None) -> dict[str, Any]:
    """Write `out_dir/sft.jsonl` + `report.json` from a built-in set or a table source spec (chat_sources.py);
    returns the report."""
    report = SftReport()
    if source == PYTHON_QA:
        conversations = python_qa(seed, limit)
    elif source == grounded.PYTHON_GROUNDED:
        conversations = grounded.python_grounded(seed)
    elif source.startswith("local:"):
        raise SourceError(
            f"unknown SFT source {source!r}; use {PYTHON_QA}, {grounded.PYTHON_GROUNDED}, a .jsonl[.gz|.zst] "
            "or .parquet file or hf:NAME"
        )
    else:
        conversations = _from_table(source, report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if source == grounded.PYTHON_GROUNDED:  # the QA set of the functions this data never shows
        heldout = json.dumps(grounded.heldout_report(), indent=2, ensure_ascii=False)
        (out_dir / grounded.HELDOUT_FILE).write_text(heldout + "\n", encoding="utf-8")
    tmp = out_dir / f".{SFT_FILE}.tmp"
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for messages in conversations:
                if limit is not None and report.conversations >= limit:
                    break
                handle.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
                report.conversations += 1
                report.turns += len(messages)
        if report.conversations == 0:
            raise SourceError(f"SFT source {source!r} has no valid conversations")
        os.replace(tmp, out_dir / SFT_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    summary = {
        "source": source,
        "seed": seed,
        "conversations": report.conversations,
        "messages": report.turns,
        "skipped": report.skipped_count,
        "skipped_reasons": dict(sorted(report.reasons.items())),
        "skipped_lines": report.skipped,
    }
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
