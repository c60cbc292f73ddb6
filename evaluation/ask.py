"""Ask a GGUF questions through llama-server exactly as the backend asks its model.

The prompt comes from the one chat contract, `common.chat.fit_prompt`, under the system prompt and answer
budget the backend serves with, with search results in DOCUMENTS mode: the eval scores the model the way
users reach it (a test checks that both build the same ids for the same conversation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

from common.chat import PromptTooLong, SearchMode, Source, fit_prompt
from converter.llama_server import LlamaServer

SAMPLE_QUESTIONS = (
    "What does json.dumps do?",
    "What does os.path.join do?",
    "Explain the re module.",
    "What is a Python list?",
    "How do I read a file line by line?",
)


def answer_budget(max_tokens: int, ctx_size: int) -> int:
    """Tokens left for an answer: the configured default, at most half the context (as the backend caps it)."""
    return min(max_tokens, ctx_size // 2)


@dataclass
class ChatModel:
    """Greedy answers from one llama-server (temperature 0: the report is reproducible)."""

    server: LlamaServer
    tokenizer: Tokenizer
    system_prompt: str
    ctx_size: int
    max_tokens: int = 512
    too_long: int = 0  # questions whose prompt did not fit even without results (answered with "")
    results_dropped: int = 0  # search results left out so that the prompt fits

    def prompt(self, question: str, documents: Sequence[Source] = ()) -> list[int] | None:
        """The ids the backend would send for this first question and its results; None when it cannot fit."""
        budget = answer_budget(self.max_tokens, self.ctx_size)
        try:
            fitted = fit_prompt(
                self.tokenizer, self.system_prompt, [], question, self.ctx_size, budget,
                documents, SearchMode.DOCUMENTS,
            )  # fmt: skip
        except PromptTooLong:
            self.too_long += 1
            return None
        self.results_dropped += len(documents) - fitted.sources_kept
        return fitted.ids

    def answer(self, question: str, documents: Sequence[Source] = ()) -> str:
        """The greedy answer to `question`, with `documents` as its search results."""
        ids = self.prompt(question, documents)
        if ids is None:
            return ""
        budget = answer_budget(self.max_tokens, self.ctx_size)
        reply = self.server.complete(ids, n_predict=budget, temperature=0.0, top_k=1)
        return str(reply.get("content", "")).strip()

    def samples(self, questions: Sequence[str] = SAMPLE_QUESTIONS) -> list[dict[str, str]]:
        """The fixed sample generations: each question and the model's greedy answer."""
        return [{"prompt": q, "completion": self.answer(q)} for q in questions]
