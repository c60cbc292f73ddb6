"""Prompt building with the model's chat format, truncating history to fit the context window."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from backend.core.errors import UserError
from chakor.documents.render import SearchMode, SourceLike
from chakor.documents.render import with_sources as render_sources
from trainer.tokenizer.chat import END, encode_chat, load_tokenizer

Turn = dict[str, str]


class PromptTooLong(UserError):
    """Even the system prompt and the newest message alone do not fit the context."""

    code = "CONTEXT_OVERFLOW"


@lru_cache(maxsize=4)
def tokenizer_at(path: Path) -> Tokenizer:
    """The chat tokenizer in directory `path` (loaded once)."""
    return load_tokenizer(path)


def with_sources(system_prompt: str, sources: Sequence[SourceLike], mode: SearchMode = SearchMode.WEB) -> str:
    """The system prompt plus numbered results to cite as [1], [2], ... (the template SFT data uses)."""
    return render_sources(system_prompt, sources, mode)


def build_prompt(
    tokenizer: Tokenizer, system: str, history: list[Turn], user_text: str, ctx_size: int, answer_budget: int
) -> list[int]:
    """Token ids of system + as much recent history as fits + the new user turn + generation prompt.

    Whole turns are dropped from the oldest; the system prompt and the newest user turn always stay.
    """
    limit = ctx_size - answer_budget
    head = [{"role": "system", "content": system}] if system else []
    tail = [{"role": "user", "content": user_text}]
    start = 0
    while True:
        ids = encode_chat(tokenizer, head + history[start:] + tail, add_generation_prompt=True).ids
        if len(ids) <= limit:
            return ids
        if start >= len(history):
            raise PromptTooLong(
                f"the message needs {len(ids)} tokens but the model's context leaves {limit} "
                f"({ctx_size} minus {answer_budget} for the answer)"
            )
        start += 1
        # Keep history starting at a user turn so the model never sees an orphaned answer.
        while start < len(history) and history[start]["role"] != "user":
            start += 1


STOP = [END]
