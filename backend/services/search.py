"""Web search through Tavily's async client, with results cached in the database."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import timedelta

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError
from tavily import AsyncTavilyClient

from backend.core.config import Settings
from backend.core.errors import UserError, ValidationError
from backend.models import SearchCacheEntry, Source
from backend.models.common import utcnow
from backend.services import caps
from backend.services.validation import clean_text

MAX_QUERY_CHARS = 400
MAX_RESULTS = 10
SEARCH_TIMEOUT_SECONDS = 15


class SearchUnavailable(UserError):
    """Web search is not configured, or the search service failed."""

    code = "SEARCH_UNAVAILABLE"


class WebSearch:
    """Searches the web, caching results per (query, max_results) for `search_cache_seconds`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = (
            AsyncTavilyClient(api_key=settings.tavily_api_key, api_base_url=settings.tavily_base_url)
            if settings.tavily_api_key
            else None
        )

    @property
    def configured(self) -> bool:
        """Whether an API key is set."""
        return self._client is not None

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.close()

    async def search(self, query: str, max_results: int = 5, *, user_id: PydanticObjectId) -> list[Source]:
        """Results for `query`; SearchUnavailable when not configured or Tavily fails. A search that
        goes to Tavily counts against `user_id`'s web searches per day first (LimitReached past it);
        cached results are free."""
        query = clean_text(query, "query", MAX_QUERY_CHARS)
        if not 1 <= max_results <= MAX_RESULTS:
            raise ValidationError(f"maxResults must be between 1 and {MAX_RESULTS}")
        if self._client is None:
            raise SearchUnavailable("web search is not configured (set CHAKOR_TAVILY_API_KEY)")
        key = hashlib.sha256(f"{max_results}\n{query}".encode("utf-8", "surrogatepass")).hexdigest()
        cached = await SearchCacheEntry.find_one({"key": key, "expires_at": {"$gt": utcnow()}})
        if cached is not None:
            return cached.results
        await caps.take_web_search(user_id, self.settings)
        try:
            response = await self._client.search(
                query, max_results=max_results, timeout=SEARCH_TIMEOUT_SECONDS
            )
            results = [
                Source(
                    title=str(item.get("title") or item.get("url") or ""),
                    url=str(item.get("url") or ""),
                    content=str(item.get("content") or ""),
                    score=item.get("score") if isinstance(item.get("score"), int | float) else None,
                )
                for item in response.get("results", [])[:max_results]
            ]
        except Exception as exc:  # any failure of the remote service means "unavailable"
            raise SearchUnavailable(f"web search unavailable: {type(exc).__name__}") from exc
        await self._store(key, query, results)
        return results

    async def _store(self, key: str, query: str, results: list[Source]) -> None:
        if self.settings.search_cache_seconds <= 0:
            return
        expires = utcnow() + timedelta(seconds=self.settings.search_cache_seconds)
        collection = SearchCacheEntry.get_pymongo_collection()
        entry = SearchCacheEntry(key=key, query=query, results=results, expires_at=expires)
        document = entry.model_dump(by_alias=True, exclude={"id"})
        with contextlib.suppress(DuplicateKeyError):  # a concurrent search stored it first
            await collection.replace_one({"key": key}, document, upsert=True)
