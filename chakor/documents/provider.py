"""The document-search provider interface, and the one function that retrieves and renders a question.

The backend, the eval and anything else that asks the model with DOCUMENTS search go through
`retrieve_messages`, so they all see the same results in the same prompt. `DocumentIndex` is the
embedded provider; a search server (see docs/documents.md) only needs `search`.
"""

from __future__ import annotations

from typing import Protocol

from chakor.documents.index import Hit
from chakor.documents.render import DOCUMENT_RESULTS, SearchMode, grounded_messages
from trainer.tokenizer.chat import Message


class DocumentProvider(Protocol):
    """Anything that returns the best passages for a free-text query."""

    def search(self, query: str, limit: int = 5) -> list[Hit]: ...


def retrieve_messages(
    provider: DocumentProvider, system_prompt: str, question: str, limit: int = DOCUMENT_RESULTS
) -> tuple[list[Message], list[Hit]]:
    """The first-turn conversation for `question` with its document results, and those results."""
    hits = provider.search(question, limit)
    return grounded_messages(system_prompt, hits, question, SearchMode.DOCUMENTS), hits
