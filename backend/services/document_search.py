"""DOCUMENTS search for the backend: the site's collections (`chakor docs add`) and the caller's own
uploads, as chat sources.

The index is read in a worker thread (tantivy reads segment files); every search reloads it, so a
collection added by `chakor docs add` or an upload is found by the next chat. A search sees exactly
the site's passages and the caller's own: the owner filter is part of the index query.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from pathlib import PurePath

from beanie import PydanticObjectId

from backend.core.config import Settings
from backend.core.errors import ValidationError
from backend.models import Source, UploadedDocument
from backend.services.search import MAX_QUERY_CHARS, MAX_RESULTS, SearchUnavailable, WebSearch
from backend.services.validation import clean_text
from common.chat import SearchMode, SearchResult
from documents.index import SITE, DocumentIndex, DocumentIndexError

log = logging.getLogger("chakor.backend")
NO_INDEX = "no documents are indexed (add them with `chakor docs add PATH`)"
NO_DOCUMENTS = "no documents to search yet (upload some, or an admin adds site collections)"
MAX_COLLECTIONS = 20  # names one search may narrow to (a client's picker, not a list of everything)
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, https:, pydoc:, ...


def public_location(url: str) -> str:
    """Where a hit comes from, as a client may see it: a URL as it is, a file's server path cut to the
    file's name (`/srv/docs/guide.md` -> `guide.md`, `/srv/data.jsonl#7` -> `data.jsonl#7`)."""
    if URL_SCHEME.match(url):
        return url
    path, hash_sign, anchor = url.partition("#")
    return PurePath(path).name + hash_sign + anchor


def source_of(hit: SearchResult) -> Source:
    """A stored chat source for an index hit: `url` is the document's URL or file name (never the
    server's path: sources reach every client and are stored in its conversation), `content` the snippet."""
    return Source(
        title=hit.title,
        url=public_location(hit.url),
        content=hit.content,
        score=hit.score,
        collection=hit.collection or None,
    )


def clean_collections(collections: Sequence[str] | None) -> list[str] | None:
    """The collection names a search is narrowed to (None: all the caller may see); ValidationError
    for too many or malformed ones. An unknown name simply matches nothing."""
    if collections is None:
        return None
    if len(collections) > MAX_COLLECTIONS:
        raise ValidationError(f"at most {MAX_COLLECTIONS} collections per search")
    return sorted({clean_text(name, "collection", 200) for name in collections})


class DocumentSearch:
    """Searches the document index at `settings.docs_index_dir` for one user at a time."""

    def __init__(self, settings: Settings) -> None:
        self.index = DocumentIndex(settings.docs_index_dir)

    @property
    def configured(self) -> bool:
        """Whether `chakor docs add` has created the index."""
        return self.index.exists

    async def search(
        self,
        query: str,
        max_results: int,
        user_id: PydanticObjectId,
        collections: Sequence[str] | None = None,
    ) -> list[Source]:
        """The best passages for `query` among the site's and `user_id`'s own (narrowed to
        `collections` when given); SearchUnavailable when there is no index or it cannot be read."""
        query = clean_text(query, "query", MAX_QUERY_CHARS)
        if not 1 <= max_results <= MAX_RESULTS:
            raise ValidationError(f"maxResults must be between 1 and {MAX_RESULTS}")
        names = clean_collections(collections)
        owners = (SITE, str(user_id))
        try:
            hits = await asyncio.to_thread(self.index.search, query, max_results, owners, names)
        except (DocumentIndexError, OSError, ValueError) as exc:
            # The detail names server paths: it goes to the log, the client gets the gist.
            log.warning("document search unavailable: %s", exc)
            reason = NO_INDEX if not self.configured else "the index cannot be read (see the backend's log)"
            raise SearchUnavailable(f"document search unavailable: {reason}") from exc
        return [source_of(hit) for hit in hits]


def chat_search_mode(search: SearchMode | None, web_search: bool | None) -> SearchMode:
    """The mode a chat turn asked for: `search`, else the deprecated `webSearch: true` as WEB."""
    if search is None:
        return SearchMode.WEB if web_search else SearchMode.OFF
    if web_search and search is not SearchMode.WEB:
        raise ValidationError(f"webSearch: true contradicts search: {search.value} (webSearch is deprecated)")
    return search


async def _has_documents(documents: DocumentSearch, user_id: PydanticObjectId) -> bool:
    """Whether a DOCUMENTS search by `user_id` has anything to search: a site collection or one of
    their own uploaded files (another user's uploads do not count)."""
    site = await asyncio.to_thread(documents.index.collections) if documents.configured else []
    if site:
        return True
    return await UploadedDocument.find({"user_id": user_id, "ready": True}).limit(1).count() > 0


async def search_availability(
    web: WebSearch, documents: DocumentSearch, user_id: PydanticObjectId
) -> dict[SearchMode, str | None]:
    """Each search mode and why `user_id` cannot use it now (None: they can)."""
    no_web = "web search is not configured (set CHAKOR_TAVILY_API_KEY)"
    return {
        SearchMode.OFF: None,
        SearchMode.WEB: None if web.configured else no_web,
        SearchMode.DOCUMENTS: None if await _has_documents(documents, user_id) else NO_DOCUMENTS,
    }
