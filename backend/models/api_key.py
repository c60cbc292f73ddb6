"""API keys for programmatic clients: only a SHA-256 of the secret is stored."""

from __future__ import annotations

from datetime import datetime

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field

from backend.models.common import utcnow


class ApiKey(Document):
    """A user's API key; `prefix` (the secret's first characters) lets the owner tell keys apart."""

    user_id: PydanticObjectId
    name: str
    prefix: str
    key_hash: Indexed(str, unique=True)  # type: ignore[valid-type]
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None

    class Settings:
        name = "api_keys"
        indexes = [pymongo.IndexModel([("user_id", pymongo.ASCENDING), ("created_at", pymongo.ASCENDING)])]
