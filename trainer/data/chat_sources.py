"""Chat conversations from a table source (JSONL, parquet, Hugging Face dataset) for `chakor data sft`.

Three shapes of row are understood:
- a `messages` column (or the spec's `field`): a list of `{"role", "content"}` (a JSONL line may also be
  the bare list);
- a ShareGPT `conversations` column: a list of `{"from", "value"}`, `human`/`gpt`/`system` (and
  `user`/`assistant`) mapped to user/assistant/system;
- a prompt/response pair of columns named by the spec's `?prompt=...&response=...`: one user turn, one
  assistant turn.
Every conversation is checked before it is kept: an optional system message first, then user and
assistant turns alternating from a user turn, at least one assistant turn, no empty turn, no unknown
role; what fails is dropped with its reason (`DROP_REASONS`), never crashing the read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from common.chat import ROLES, Message, validate_messages
from trainer.data.sources import ReadStats, Row, Source, SourceError, iter_rows, missing_columns

MESSAGE_COLUMNS = ("messages", "conversations")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
DROP_REASONS = (
    "malformed_json",
    "invalid_messages",
    "unknown_role",
    "empty_turn",
    "not_alternating",
    "no_assistant_turn",
)


def _columns(source: Source) -> tuple[str, ...]:
    if source.prompt and source.response:
        return (source.prompt, source.response)
    return (source.field,) if source.field else MESSAGE_COLUMNS


def _turns(source: Source, row: Row) -> list[Any] | None:
    """The row's list of turns, or None when it has none (a parquet/dataset row without the column raises)."""
    record = row.record
    if isinstance(record, list):
        return record
    if record is None:
        return None
    names = _columns(source)
    if source.prompt and source.response:
        if source.format != "jsonl" and not all(name in record for name in names):
            raise missing_columns(source, names, row)
        prompt, response = record.get(source.prompt), record.get(source.response)
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    present = [name for name in names if record.get(name) is not None]
    if not present:
        if source.format != "jsonl" and not any(name in record for name in names):
            raise missing_columns(source, names, row)
        return None
    turns = record[present[0]]
    return turns if isinstance(turns, list) else None


def _message(turn: Any) -> Message | str:
    """A `{"role", "content"}` message from either shape of turn, or the drop reason."""
    if not isinstance(turn, dict):
        return "invalid_messages"
    if "from" in turn:
        role, content = SHAREGPT_ROLES.get(str(turn["from"]).lower()), turn.get("value")
    else:
        role, content = turn.get("role"), turn.get("content")
        role = role if role in ROLES else None
    if role is None:
        return "unknown_role"
    if not isinstance(content, str):
        return "invalid_messages"
    if not content.strip():
        return "empty_turn"
    return {"role": role, "content": content}


def conversation(source: Source, row: Row) -> list[Message] | str:
    """The checked conversation of one row, or the reason it is dropped (one of DROP_REASONS)."""
    if row.problem is not None:
        return "malformed_json"
    turns = _turns(source, row)
    if not turns:
        return "invalid_messages"
    messages = []
    for turn in turns:
        message = _message(turn)
        if isinstance(message, str):
            return message
        messages.append(message)
    body = messages[1:] if messages[0]["role"] == "system" else messages
    if any(m["role"] != ("user", "assistant")[i % 2] for i, m in enumerate(body)):
        return "not_alternating"
    if not any(m["role"] == "assistant" for m in body):
        return "no_assistant_turn"
    try:
        validate_messages(messages)  # the chat format's own contract, checked last as the trainer will
    except ValueError:
        return "invalid_messages"
    return messages


def read_conversations(source: Source) -> Iterator[tuple[int, list[Message] | str]]:
    """`(row number, conversation)` or `(row number, drop reason)` for every row of `source`, in order.

    Raises SourceError (one line) for a corrupt file, a missing column, split or dataset.
    """
    if source.format not in ("jsonl", "parquet", "hf"):
        raise SourceError(f"SFT source {source.spec!r}: use a .jsonl[.gz|.zst] or .parquet file or hf:NAME")
    for row in iter_rows(source, ReadStats(), _columns(source)):
        yield row.number, conversation(source, row)
