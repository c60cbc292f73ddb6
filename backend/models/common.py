"""Helpers shared by the documents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from beanie import Document, PydanticObjectId


def utcnow() -> datetime:
    """Now, timezone-aware UTC, truncated to milliseconds (what BSON dates store)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def oid(document: Document) -> PydanticObjectId:
    """The id of a stored document."""
    if document.id is None:
        raise ValueError(f"{type(document).__name__} has not been stored yet")
    return document.id


class Owner(Protocol):
    """Whoever documents are looked up for by `user_id`: a User, or an auth Caller (its id is known
    from the token while its account is still being checked)."""

    @property
    def id(self) -> PydanticObjectId | None: ...
