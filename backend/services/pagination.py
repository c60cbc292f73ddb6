"""Opaque cursors for (timestamp, id) ordered pages, newest first."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, TypeVar

from beanie import Document, PydanticObjectId
from beanie.odm.queries.find import FindMany

from backend.core.errors import ValidationError
from backend.models.common import oid

D = TypeVar("D", bound=Document)


def encode_cursor(when: datetime, doc_id: PydanticObjectId) -> str:
    """A cursor pointing just after (`when`, `doc_id`)."""
    raw = f"{when.isoformat()}|{doc_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, PydanticObjectId]:
    """The position in a cursor; ValidationError when it was not made by `encode_cursor`."""
    try:
        when, doc_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(when), PydanticObjectId(doc_id)
    except (ValueError, binascii.Error, UnicodeError, TypeError):
        raise ValidationError("invalid cursor") from None


def after_filter(field: str, cursor: str | None) -> dict[str, Any]:
    """A filter selecting documents after `cursor` in (`field` desc, `_id` desc) order."""
    if cursor is None:
        return {}
    when, doc_id = decode_cursor(cursor)
    return {"$or": [{field: {"$lt": when}}, {field: when, "_id": {"$lt": doc_id}}]}


async def newest_first(found: FindMany[D], field: str, limit: int) -> tuple[list[D], bool, str | None]:
    """Up to `limit` of `found` in (`field` desc, `_id` desc) order, whether more follow, and the
    cursor just after the last (None for an empty page)."""
    page = await found.sort(f"-{field}", "-_id").limit(limit + 1).to_list()
    has_next, page = len(page) > limit, page[:limit]
    cursor = encode_cursor(getattr(page[-1], field), oid(page[-1])) if page else None
    return page, has_next, cursor
