"""Cached web search results, expired by a TTL index."""

from __future__ import annotations

from datetime import datetime

import pymongo
from beanie import Document, Indexed

from backend.models.conversation import Source


class SearchCacheEntry(Document):
    """Results of one (query, max_results) search until `expires_at`."""

    key: Indexed(str, unique=True)  # type: ignore[valid-type]
    query: str
    results: list[Source]
    expires_at: datetime

    class Settings:
        name = "search_cache"
        indexes = [pymongo.IndexModel([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0)]
