"""Ask a GGUF questions through llama-server exactly as the backend builds its prompts.

The prompt is `backend.services.prompt.build_prompt` under the backend's system prompt, with search
results added by its `with_sources` in DOCUMENTS mode: the eval scores the model the way users reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from backend.services.prompt import PromptTooLong, build_prompt, with_sources
from chakor.documents.render import SearchMode
from converter.llama_server import LlamaServer

SAMPLE_QUESTIONS = (
    "What does json.dumps do?",
    "What does os.path.join do?",
    "Explain the re module.",
    "What is a Python list?",
    "How do I read a file line by line?",
)


@dataclass
class ChatModel:
    """Greedy answers from one llama-server (temperature 0: the report is reproducible).

    The answer budget is the backend's default (CHAKOR_CHAT_MAX_TOKENS, at most half the context), and
    like the backend it keeps as many of the first search results as fit the context.
    """

    server: LlamaServer
    tokenizer: Tokenizer
    system_prompt: str
    ctx_size: int
    max_tokens: int = 512
    too_long: int = 0  # questions whose prompt did not fit even without results (answered with "")
    results_dropped: int = 0  # search results left out so that the prompt fits

    def answer(self, question: str, documents: Sequence[Any] = ()) -> str:
        """The greedy answer to `question`, with `documents` (title, url, content) as its search results."""
        budget = min(self.max_tokens, self.ctx_size // 2)
        ids = None
        for count in range(len(documents), -1, -1):
            system = with_sources(self.system_prompt, list(documents[:count]), SearchMode.DOCUMENTS)
            try:
                ids = build_prompt(self.tokenizer, system, [], question, self.ctx_size, budget)
            except PromptTooLong:
                continue
            self.results_dropped += len(documents) - count
            break
        if ids is None:
            self.too_long += 1
            return ""
        reply = self.server.complete(ids, n_predict=budget, temperature=0.0, top_k=1)
        return str(reply.get("content", "")).strip()

    def samples(self, questions: Sequence[str] = SAMPLE_QUESTIONS) -> list[dict[str, str]]:
        """The fixed sample generations: each question and the model's greedy answer."""
        return [{"prompt": q, "completion": self.answer(q)} for q in questions]
