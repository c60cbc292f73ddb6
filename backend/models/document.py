"""Uploaded documents (their passages live in the tantivy index, keyed by the document's id) and each
user's running totals, which the upload limits are reserved against."""

from __future__ import annotations

from datetime import datetime

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import Field

from backend.models.common import utcnow


class UploadedDocument(Document):
    """One file a user uploaded into one of their collections; `ready` once its passages are committed
    to the index (a document deleted before that is removed from the index by the upload itself)."""

    user_id: PydanticObjectId
    name: str
    collection: str
    kind: str
    bytes: int
    passages: int
    ready: bool = False
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "documents"
        indexes = [pymongo.IndexModel([("user_id", pymongo.ASCENDING), ("collection", pymongo.ASCENDING)])]


class DocumentQuota(Document):
    """What one user's documents hold: `files` and `bytes`, moved by one `$inc` per upload or delete,
    so parallel uploads cannot pass CHAKOR_MAX_DOCUMENTS_PER_USER or CHAKOR_MAX_DOCUMENT_BYTES_PER_USER."""

    user_id: PydanticObjectId
    files: int = 0
    bytes: int = 0

    class Settings:
        name = "document_quotas"
        indexes = [pymongo.IndexModel([("user_id", pymongo.ASCENDING)], unique=True)]
