"""Held-out questions, asked the way the backend asks, scored by token-F1 against reference answers.

The question set (docs/interfaces.md, "QA set") is a JSONL file of
`{"question", "reference", "id"?, "echo"?, "documents"?: [{"title", "url", "snippet"}]}`, or a JSON file
holding such a list (under `"qa"` or as the whole file). Each question is asked in one or more modes:
`off` (the question alone under the backend's system prompt) and `documents` (the system prompt with
search results, rendered by the backend's own prompt code). Results come from a document-search
provider (`documents.index.DocumentProvider`) when one is given, else from the record's
`documents`. `echo` is a prefix the answer may start with (the title a grounded answer repeats before
copying its source, "json.dumps: ..."); it is dropped before scoring.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.chat import DOCUMENT_RESULTS, SearchResult
from documents.index import DocumentProvider
from evaluation.errors import EvalError
from evaluation.report import QAMode

MODES = ("off", "documents")
MAX_EXAMPLES = 5  # answers kept in the report per mode
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class QAItem:
    """A question, its reference answer and, optionally, the documents to answer it from."""

    question: str
    reference: str
    id: str | None = None
    documents: tuple[SearchResult, ...] | None = None
    echo: str | None = None


Answerer = Callable[[str, Sequence[SearchResult]], str]  # (question, search results) -> the model's answer


def _item(record: Any, where: str) -> QAItem:
    if not isinstance(record, dict):
        raise EvalError(f"{where}: expected an object with question and reference")
    question, reference = record.get("question"), record.get("reference")
    if not isinstance(question, str) or not question.strip():
        raise EvalError(f"{where}: question must be a non-empty string")
    if not isinstance(reference, str) or not reference.strip():
        raise EvalError(f"{where}: reference must be a non-empty string")
    documents = record.get("documents")
    docs: tuple[SearchResult, ...] | None = None
    if documents is not None:
        if not isinstance(documents, list) or not all(isinstance(d, dict) for d in documents):
            raise EvalError(f"{where}: documents must be a list of {{title, url, snippet}}")
        try:
            docs = tuple(
                SearchResult(str(d["title"]), str(d.get("url", "")), str(d["snippet"])) for d in documents
            )
        except KeyError as exc:
            raise EvalError(f"{where}: a document lacks {exc}") from None
    item_id, echo = record.get("id"), record.get("echo")
    if echo is not None and not isinstance(echo, str):
        raise EvalError(f"{where}: echo must be a string")
    return QAItem(question, reference, None if item_id is None else str(item_id), docs, echo or None)


def read_qa(path: Path) -> list[QAItem]:
    """The question set in `path` (.jsonl, or .json with a list); EvalError naming the line at fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"{path}: cannot read the question set ({exc})") from None
    items: list[QAItem] = []
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvalError(f"{path}: not JSON ({exc})") from None
        records = data.get("qa") if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise EvalError(f"{path}: expected a list of questions (or an object with a 'qa' list)")
        items = [_item(record, f"{path}: qa[{i}]") for i, record in enumerate(records)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalError(f"{path}:{number}: not JSON ({exc.msg})") from None
            items.append(_item(record, f"{path}:{number}"))
    if not items:
        raise EvalError(f"{path}: no questions")
    return items


def normalize(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after `normalize` (1.0 when both are empty)."""
    predicted, wanted = normalize(prediction), normalize(reference)
    if not predicted or not wanted:
        return float(predicted == wanted)
    common = sum((Counter(predicted) & Counter(wanted)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


@dataclass
class ModeScore:
    """Scores of one mode over the questions it could ask."""

    mode: str
    asked: int = 0
    skipped: int = 0  # `documents` mode: questions for which no document was found
    f1_sum: float = 0.0
    exact: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def result(self) -> QAMode:
        """The scores as the report keeps them: means over the questions asked (None when none was)."""
        return QAMode(
            mode=self.mode,
            asked=self.asked,
            skipped=self.skipped,
            mean_f1=self.f1_sum / self.asked if self.asked else None,
            exact_match=self.exact / self.asked if self.asked else None,
            examples=self.examples,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.result())


def score_qa(
    items: Sequence[QAItem],
    answer: Answerer,
    modes: Sequence[str] = MODES,
    provider: DocumentProvider | None = None,
    results: int = DOCUMENT_RESULTS,
) -> dict[str, ModeScore]:
    """Ask every item in every mode and score each answer by token-F1 (and exact match after normalising)."""
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        raise EvalError(f"unknown QA mode(s) {', '.join(unknown)}; use {', '.join(MODES)}")
    scores = {mode: ModeScore(mode) for mode in modes}
    for item in items:
        for mode in modes:
            score = scores[mode]
            documents: Sequence[SearchResult] = ()
            if mode == "documents":
                found = provider.search(item.question, results) if provider is not None else item.documents
                if not found:
                    score.skipped += 1
                    continue
                documents = found
            reply = answer(item.question, documents)
            scored = reply.removeprefix(item.echo).strip() if item.echo else reply
            f1 = token_f1(scored, item.reference)
            score.asked += 1
            score.f1_sum += f1
            score.exact += normalize(scored) == normalize(item.reference)
            if len(score.examples) < MAX_EXAMPLES:
                score.examples.append(
                    {
                        "question": item.question,
                        "reference": item.reference,
                        "answer": reply,
                        "f1": round(f1, 4),
                    }
                )
    return scores
