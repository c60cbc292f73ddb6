"""Multiple-choice benchmark tasks: rows in each dataset's published Hugging Face schema -> scored items.

Every loader turns one row into an `Item`: the context(s), the continuations, the gold index. Prompt formats
are lm-evaluation-harness's zero-shot ones (EleutherAI/lm-evaluation-harness, lm_eval/tasks/<task>/*.yaml and
utils.py), which DCLM's eval bundle also uses for these tasks; each loader's docstring names its source.
Continuations start with a space (lm-eval's `target_delimiter: " "`), so context + continuation is the
prompt as written. `chance` is the task's random baseline as DCLM lists it (Li et al. 2024, "DataComp-LM",
arXiv:2406.11794, eval/additional_aggregation.json; nanochat's core_eval.py reads the same numbers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from evaluation.errors import EvalError
from trainer.data.sources import ReadStats, SourceError, iter_rows, parse_spec, resolve

Row = dict[str, Any]
HELDOUT_SOURCE = "val"  # `--tasks heldout=val`: the cloze task over the --data val split (heldout_rows)


@dataclass(frozen=True)
class Item:
    """One scored question: a shared context (or one per choice), the continuations, the gold choice.

    `kind`: "choice" (pick the most likely continuation), "partial" (Winogrande: the contexts differ and the
    one shared continuation is scored after each), "greedy" (LAMBADA: correct when the single continuation
    is the model's greedy prediction token by token).
    """

    task: str
    index: int
    contexts: tuple[str, ...]  # one, or one per choice ("partial")
    continuations: tuple[str, ...]  # one per choice, or the one shared ("partial", "greedy")
    gold: int
    kind: str = "choice"

    @property
    def choices(self) -> int:
        return max(len(self.contexts), len(self.continuations))

    def pair(self, choice: int) -> tuple[str, str]:
        """(context, continuation) of one choice."""
        context = self.contexts[choice if len(self.contexts) > 1 else 0]
        continuation = self.continuations[choice if len(self.continuations) > 1 else 0]
        return context, continuation


@dataclass(frozen=True)
class Task:
    """How to read one benchmark: its row loader, its random baseline, and the metric CORE takes from it.

    `headline` is "accuracy_norm" where lm-eval reports acc_norm as the task's number (HellaSwag, ARC, PIQA,
    OpenBookQA), "accuracy" where the continuations are the same length or single (Winogrande, LAMBADA, MMLU).
    """

    name: str
    load: Callable[[str, Row, int], Item]
    chance: float
    headline: str = "accuracy_norm"


def _hellaswag_text(text: str) -> str:
    """lm-eval's hellaswag/utils.py `preprocess`: WikiHow's ` [title]` markers become sentence ends."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag(task: str, row: Row, index: int) -> Item:
    """Rowan/hellaswag: `activity_label`, `ctx_a`, `ctx_b`, `endings` (4), `label` (a digit string).

    lm-eval hellaswag.yaml: context `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`,
    choices the preprocessed endings.
    """
    context = _hellaswag_text(f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}")
    endings = tuple(" " + _hellaswag_text(ending) for ending in row["endings"])
    return Item(task, index, (context,), endings, int(row["label"]))


def _labelled_choices(task: str, row: Row, context: str, index: int) -> Item:
    """ARC and OpenBookQA: `choices{text,label}` and `answerKey` (letters, or digits in some ARC rows)."""
    labels = [str(label) for label in row["choices"]["label"]]
    key = str(row["answerKey"])
    if key not in labels:
        raise EvalError(f"{task} row {index}: answerKey {key!r} is not among the labels {labels}")
    return Item(task, index, (context,), tuple(" " + t for t in row["choices"]["text"]), labels.index(key))


def arc(task: str, row: Row, index: int) -> Item:
    """allenai/ai2_arc (ARC-Easy / ARC-Challenge): `question`, `choices{text,label}` (3-5), `answerKey`.

    lm-eval arc_easy.yaml: "Question: {{question}}\\nAnswer:", choices the texts.
    """
    return _labelled_choices(task, row, f"Question: {row['question']}\nAnswer:", index)


def openbookqa(task: str, row: Row, index: int) -> Item:
    """allenai/openbookqa (main): `question_stem`, `choices{text,label}`, `answerKey`.

    lm-eval openbookqa.yaml: the question stem as the context, choices the texts.
    """
    return _labelled_choices(task, row, row["question_stem"], index)


def piqa(task: str, row: Row, index: int) -> Item:
    """ybisk/piqa: `goal`, `sol1`, `sol2`, `label` (0 or 1). lm-eval piqa.yaml: "Question: {{goal}}\\nAnswer:"."""
    context = f"Question: {row['goal']}\nAnswer:"
    return Item(task, index, (context,), (" " + row["sol1"], " " + row["sol2"]), int(row["label"]))


def winogrande(task: str, row: Row, index: int) -> Item:
    """allenai/winogrande: `sentence` with one `_`, `option1`, `option2`, `answer` ("1" or "2").

    Partial scoring (Trinh & Le 2018; lm-eval winogrande/preprocess_winogrande.py): the blank filled with each
    option is the context, the rest of the sentence after the blank is the continuation scored after each.
    """
    sentence = row["sentence"]
    if sentence.count("_") != 1:
        raise EvalError(f"{task} row {index}: the sentence needs exactly one '_' blank: {sentence!r}")
    blank = sentence.index("_")
    contexts = (sentence[:blank] + row["option1"], sentence[:blank] + row["option2"])
    continuation = " " + sentence[blank + 1 :].strip()
    return Item(task, index, contexts, (continuation,), int(row["answer"]) - 1, kind="partial")


def lambada(task: str, row: Row, index: int) -> Item:
    """EleutherAI/lambada_openai: `text`; the last word is the target, right when it is the greedy continuation.

    lm-eval lambada_openai.yaml: context the text up to the last space, continuation " " + the last word.
    """
    context, _, word = row["text"].strip().rpartition(" ")
    if not context:
        raise EvalError(f"{task} row {index}: the text has no last word to predict")
    return Item(task, index, (context,), (" " + word,), 0, kind="greedy")


def mmlu(task: str, row: Row, index: int) -> Item:
    """cais/mmlu: `question`, `subject`, `choices` (4 strings), `answer` (0-3).

    lm-eval mmlu/default/_default_template_yaml, zero-shot: the subject line, the question, "A. ..." per
    choice, "Answer:"; the continuations are the letters.
    """
    letters = "ABCD"[: len(row["choices"])]
    subject = str(row.get("subject", "")).replace("_", " ")
    lines = [f"The following are multiple choice questions (with answers) about {subject}.", ""]
    lines += [
        row["question"].strip(),
        *(f"{ch}. {text}" for ch, text in zip(letters, row["choices"], strict=True)),
    ]
    return Item(
        task, index, ("\n".join(lines) + "\nAnswer:",), tuple(" " + ch for ch in letters), int(row["answer"])
    )


def choice(task: str, row: Row, index: int) -> Item:
    """Our own schema for any other set: `context`, `choices` (strings), `label` (the gold index)."""
    return Item(task, index, (row["context"],), tuple(" " + c for c in row["choices"]), int(row["label"]))


TASKS = {
    task.name: task
    for task in (
        Task("hellaswag", hellaswag, 0.25),
        Task("arc_easy", arc, 0.25),
        Task("arc_challenge", arc, 0.25),
        Task("piqa", piqa, 0.50),
        Task("winogrande", winogrande, 0.50, "accuracy"),
        Task("openbookqa", openbookqa, 0.25),
        Task("lambada", lambada, 0.0, "accuracy"),
        Task("mmlu", mmlu, 0.25, "accuracy"),
        Task("heldout", choice, 0.25),
    )
}


def parse_tasks(spec: str) -> dict[str, str]:
    """`NAME=SOURCE[,NAME=SOURCE...]` -> {name: source}; EvalError on an unknown name or a missing file."""
    tasks: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, source = part.partition("=")
        if not sep or not source:
            raise EvalError(f"--tasks {part!r}: expected NAME=SOURCE")
        if name not in TASKS:
            raise EvalError(f"--tasks: unknown task {name!r} (known: {', '.join(TASKS)})")
        if name in tasks:
            raise EvalError(f"--tasks: {name} given twice")
        if (name, source) != ("heldout", HELDOUT_SOURCE):  # checked now, not after the eval's earlier steps
            try:
                resolve(parse_spec(source))
            except SourceError as error:
                raise EvalError(f"--tasks {name}={source}: {error}") from None
        tasks[name] = source
    return tasks


def read_rows(source: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The rows of `source`, streamed, in any table spec the data pipeline reads (trainer.data.sources:
    a local or fsspec `.jsonl[.gz|.zst]` / `.parquet` file or glob, or `hf:NAME?split=...&config=...`).

    A Hub dataset's split defaults to "validation", where the benchmarks' published labels are. Only the
    first `limit` rows are read. EvalError (one line, naming the source) when it cannot be read.
    """
    try:
        spec = parse_spec(source)
        if spec.format not in ("jsonl", "parquet", "hf"):
            raise EvalError(f"{source}: not a table source (expected .jsonl, .parquet or hf:NAME)")
        if spec.format == "hf" and "split=" not in source:
            spec = replace(spec, split="validation")
        if limit is not None:
            spec = replace(spec, limit=min(limit, spec.limit or limit))
        for row in iter_rows(resolve(spec), ReadStats(), columns=()):
            if not isinstance(row.record, dict):
                raise EvalError(f"{source}: {row.file} record {row.number} is not a JSON object")
            yield row.record
    except SourceError as error:
        raise EvalError(str(error)) from None


def load_items(name: str, source: str, limit: int | None = None) -> list[Item]:
    """The first `limit` items of task `name` from `source`; EvalError naming the row whose schema is wrong.

    A list: a benchmark's items are scored by several models and written to several inputs, and `--limit`
    keeps them small (the published validation sets have at most 10,042 rows, HellaSwag's).
    """
    task = TASKS[name]
    items = []
    for index, row in enumerate(read_rows(source, limit)):
        try:
            items.append(task.load(name, row, index))
        except (KeyError, TypeError, ValueError) as exc:
            raise EvalError(
                f"{source}: row {index} is not in the {name} schema ({type(exc).__name__}: {exc})"
            ) from None
    if not items:
        raise EvalError(f"{source}: no rows for {name}")
    return items


HELDOUT_WORDS = (
    8,
    40,
)  # sentences this long: shorter ones leave too little to continue, longer ones cost a lot
HELDOUT_CHOICES = 4


def heldout_rows(text: str, limit: int) -> Iterator[Row]:
    """A cloze task over held-out text in the `choice` schema, for a corpus with no benchmark (the quickstart).

    Each sentence of `text` with 8 to 40 words is cut after its first half; the choices are its own second
    half and the second halves of the next three such sentences with other endings (a fixed rotation, so the
    set is the same on every run). A model that learned the text's language picks its own ending more often
    than chance (1/4).
    """
    sentences = [
        words
        for sentence in re.split(r"(?<=[.!?])\s+", text)
        if HELDOUT_WORDS[0] <= len(words := sentence.split()) <= HELDOUT_WORDS[1]
    ]
    halves = [(" ".join(w[: len(w) // 2]), " ".join(w[len(w) // 2 :])) for w in sentences]
    made = 0
    for i, (context, ending) in enumerate(halves):
        if made == limit:
            return
        others: list[str] = []
        for k in range(1, len(halves)):  # distinct endings only: two equal choices are a tie, not a question
            other = halves[(i + k) % len(halves)][1]
            if other != ending and other not in others:
                others.append(other)
                if len(others) == HELDOUT_CHOICES - 1:
                    break
        if len(others) == HELDOUT_CHOICES - 1:
            gold = made % HELDOUT_CHOICES  # the true ending's place rotates, so position bias cannot score
            yield {"context": context, "choices": [*others[:gold], ending, *others[gold:]], "label": gold}
            made += 1
