"""A per-operation budget of message text: the cost rule bounds how many messages an operation may
return, this bounds their text, so twenty aliases of one conversation cannot return its text twenty
times over."""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar

from strawberry.extensions.base_extension import SchemaExtension

from backend.core.errors import ValidationError

# Four times the largest request (an import of 1 MiB): a long conversation's branch reads whole, a
# page of many conversations' messages does not.
MAX_RESPONSE_CHARS = 4 << 20
_spent: ContextVar[list[int] | None] = ContextVar("chakor_response_chars", default=None)


class ResponseBudget(SchemaExtension):
    """Starts each operation's count at zero (resolvers run in tasks that share it)."""

    def on_execute(self) -> Iterator[None]:
        _spent.set([0])
        yield


def charge(chars: int) -> None:
    """Count `chars` of message text toward this operation's answer; ValidationError past the budget."""
    spent = _spent.get()
    if spent is None:
        return
    spent[0] += chars
    if spent[0] > MAX_RESPONSE_CHARS:
        raise ValidationError(
            f"the answer would hold more than {MAX_RESPONSE_CHARS} characters of message text; "
            "ask for fewer messages or conversations at a time"
        )
