"""The backend's side of the one chat contract (`common.chat`): the served tokenizer, and the prompt of a
turn, with a prompt that cannot fit the context reported as the API's CONTEXT_OVERFLOW error."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from backend.core.errors import UserError
from common.chat import FittedPrompt, Message, PromptTooLong, SearchMode, Source, fit_prompt, load_tokenizer


class ContextOverflow(UserError):
    """Even the system prompt and the newest message alone do not fit the context."""

    code = "CONTEXT_OVERFLOW"


@lru_cache(maxsize=4)
def tokenizer_at(path: Path) -> Tokenizer:
    """The chat tokenizer in directory `path` (loaded once)."""
    return load_tokenizer(path)


def turn_prompt(
    tokenizer: Tokenizer,
    system_prompt: str,
    history: Sequence[Message],
    user_text: str,
    ctx_size: int,
    answer_budget: int,
    sources: Sequence[Source] = (),
    mode: SearchMode = SearchMode.WEB,
) -> FittedPrompt:
    """`common.chat.fit_prompt`, raising ContextOverflow (a UserError) where it raises PromptTooLong."""
    try:
        return fit_prompt(
            tokenizer, system_prompt, history, user_text, ctx_size, answer_budget, sources, mode
        )
    except PromptTooLong as exc:
        raise ContextOverflow(str(exc)) from None
