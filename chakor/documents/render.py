"""How search results enter the prompt: one template for the backend, the SFT data and the eval.

The results go into the system turn, numbered for citation:

    {system prompt}

    Documents (cite them as [1], [2], ...):
    [1] json.dumps: Serialize ``obj`` to a JSON formatted ``str``.
    [2] json.dump: Serialize ``obj`` as a JSON formatted stream to ``fp`` ...

Web results come under "Web search results" as `[1] title (url)` and the content on the next line;
documents leave their path out (it is on the source card) to save the small model's context.
The model is trained on exactly this text (`trainer.data.grounded`), so the backend must not render it
any other way.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Protocol

from trainer.tokenizer.chat import Message


class SearchMode(Enum):
    """Where a chat turn looks for sources before answering."""

    OFF = "OFF"
    WEB = "WEB"
    DOCUMENTS = "DOCUMENTS"


HEADINGS = {
    SearchMode.WEB: "Web search results (cite them as [1], [2], ...):",
    SearchMode.DOCUMENTS: "Documents (cite them as [1], [2], ...):",
}
# Three results of up to SNIPPET_CHARS fit the quickstart model's 256-token context beside question and answer.
DOCUMENT_RESULTS = 3


class SourceLike(Protocol):
    """A search result as the prompt needs it (backend `Source`, `documents.index.Hit`)."""

    @property
    def title(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def content(self) -> str: ...


def with_sources(system_prompt: str, sources: Sequence[SourceLike], mode: SearchMode = SearchMode.WEB) -> str:
    """The system prompt plus numbered results the answer should cite as [1], [2], ..."""
    if not sources:
        return system_prompt
    lines = [system_prompt, "", HEADINGS[mode]]
    for index, source in enumerate(sources, start=1):
        if mode is SearchMode.DOCUMENTS:  # compact: the path is on the source card, not in the context
            lines.append(f"[{index}] {source.title}: {source.content}")
        else:
            lines.append(f"[{index}] {source.title} ({source.url})\n{source.content}")
    return "\n".join(lines).strip()


def grounded_messages(
    system_prompt: str, sources: Sequence[SourceLike], question: str, mode: SearchMode = SearchMode.DOCUMENTS
) -> list[Message]:
    """The conversation the model sees for a first question with these results (no history)."""
    return [
        {"role": "system", "content": with_sources(system_prompt, sources, mode)},
        {"role": "user", "content": question},
    ]
