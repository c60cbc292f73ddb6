"""The backend's side of the one chat contract (`common.chat`): the served tokenizer, and a turn's prompt
fitted by `common.chat.fit_prompt`, with one that cannot fit reported as the API's CONTEXT_OVERFLOW error."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from tokenizers import Tokenizer

from backend.core.errors import UserError
from common.chat import FittedPrompt, PromptTooLong, SearchMode, Source, fit_prompt, load_tokenizer


class ContextOverflow(UserError):
    """Even the system prompt and the newest message alone do not fit the context."""

    code = "CONTEXT_OVERFLOW"


@lru_cache(maxsize=4)
def tokenizer_at(path: Path) -> Tokenizer:
    """The chat tokenizer in directory `path` (loaded once)."""
    return load_tokenizer(path)


class Turn(Protocol):
    """What a turn's prompt is made of: the system prompt, the active branch above the new message, the
    message, the slot's context and the answer's token budget (the chat's plan has these fields)."""

    system_prompt: str
    history: list[dict[str, str]]
    user_text: str
    ctx_size: int
    max_tokens: int


def turn_prompt(
    tokenizer: Tokenizer, turn: Turn, sources: Sequence[Source] = (), mode: SearchMode = SearchMode.WEB
) -> FittedPrompt:
    """The turn's prompt with as many of `sources` as fit; ContextOverflow when even none fit."""
    try:
        return fit_prompt(
            tokenizer, turn.system_prompt, turn.history, turn.user_text, turn.ctx_size, turn.max_tokens,
            sources, mode,
        )  # fmt: skip
    except PromptTooLong as exc:
        raise ContextOverflow(str(exc)) from None
