"""Users' own documents: upload, list, delete; and the site's collections (`chakor docs add`) for admins.

Ownership lives in the database: every operation on a document or collection finds it by the caller's
id as well as its own (another user's id or name reads as not found, like a missing one). Passages
live in the tantivy index under the owner's id and the document's id.

Limits, each a setting named in its refusal: CHAKOR_MAX_DOCUMENT_BYTES per file (the upload route
also refuses a larger body while it streams in, `backend.main`), CHAKOR_MAX_DOCUMENTS_PER_USER and
CHAKOR_MAX_DOCUMENT_BYTES_PER_USER (reserved with one `$inc` on the user's `DocumentQuota` before the
file is read, given back when it is refused or deleted), CHAKOR_MAX_PASSAGES_PER_DOCUMENT.

Parsing runs on the CPU pool and index writes in a worker thread, one at a time per process (tantivy
has one writer per index; `DocumentIndex` also waits for writers of other processes), so a chat that
starts meanwhile never waits for an upload.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from beanie import PydanticObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from backend.core.config import Settings
from backend.core.errors import NotFoundError, UserError, ValidationError
from backend.core.offload import run_cpu
from backend.models import DocumentQuota, UploadedDocument
from backend.services.caps import LimitReached
from backend.services.validation import object_id
from documents.index import Collection, DocumentIndex, DocumentIndexError
from documents.passages import Passage
from documents.uploads import UnsupportedDocument, clean_name, extract, passages_of

DEFAULT_COLLECTION = "uploads"
COLLECTION_NAME = re.compile(r"^[\w][\w .-]{0,63}$")  # a word character first, at most 64


class UploadRefused(UserError):
    """The file cannot be indexed (type, size, limits); the message names the file and why."""

    code = "UPLOAD_REFUSED"


@dataclass(frozen=True)
class CollectionSummary:
    """A collection the caller can search: their own, or the site's (`site`; `source` for admins)."""

    name: str
    site: bool
    documents: int
    passages: int
    bytes: int | None
    source: str | None = None


def collection_name(name: str | None) -> str:
    """The collection an upload goes to (DEFAULT_COLLECTION when none is named); ValidationError for
    a name that is not 1-64 letters, digits, spaces, dots, dashes or underscores."""
    if name is None:
        return DEFAULT_COLLECTION
    if not COLLECTION_NAME.match(name):
        raise ValidationError(
            "a collection name is 1-64 letters, digits, spaces, '.', '-' or '_', starting with a letter or digit"
        )
    return name


async def _reserve(user_id: PydanticObjectId, size: int, settings: Settings) -> None:
    """Count one more file of `size` bytes on the user's quota; LimitReached (nothing counted) when that
    passes a per-user limit."""
    collection = DocumentQuota.get_pymongo_collection()
    after: dict[str, Any] | None = None
    for _ in range(2):  # two first uploads at once: one insert wins, the other retries as an update
        try:
            after = await collection.find_one_and_update(
                {"user_id": user_id},
                {"$inc": {"files": 1, "bytes": size}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            break
        except DuplicateKeyError:
            continue
    if after is None:
        raise UploadRefused("your document quota is busy; try again")
    if (
        after["files"] <= settings.max_documents_per_user
        and after["bytes"] <= settings.max_document_bytes_per_user
    ):
        return
    await _release(user_id, 1, size)
    if after["files"] > settings.max_documents_per_user:
        raise LimitReached(
            f"at most {settings.max_documents_per_user} documents per user "
            "(CHAKOR_MAX_DOCUMENTS_PER_USER); delete some first"
        )
    raise LimitReached(
        f"your documents may hold at most {settings.max_document_bytes_per_user} bytes "
        "(CHAKOR_MAX_DOCUMENT_BYTES_PER_USER); delete some first"
    )


async def _release(user_id: PydanticObjectId, files: int, size: int) -> None:
    await DocumentQuota.get_pymongo_collection().update_one(
        {"user_id": user_id}, {"$inc": {"files": -files, "bytes": -size}}
    )


def _read_passages(name: str, data: bytes, max_passages: int) -> tuple[str, list[Passage]]:
    """The file's kind and passages (at most `max_passages` of them, else UnsupportedDocument)."""
    extracted = extract(name, data)
    return extracted.kind, list(passages_of(extracted, name, max_passages))


class DocumentLibrary:
    """The uploads of every user of this backend, in the index at `settings.docs_index_dir`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index = DocumentIndex(settings.docs_index_dir)
        self._writing = asyncio.Lock()  # one index writer per process; waiting uploads hold no thread

    async def _write(self, fn: Any, *args: Any) -> Any:
        async with self._writing:
            try:
                return await asyncio.to_thread(fn, *args)
            except DocumentIndexError as exc:
                raise UploadRefused(f"the document index is busy or unreadable: {exc}") from exc

    async def upload(
        self, user_id: PydanticObjectId, filename: str, data: bytes, collection: str | None
    ) -> UploadedDocument:
        """Index `data` (the file `filename`) into the user's `collection`; UploadRefused, LimitReached
        or ValidationError say why not (and nothing is kept)."""
        name = clean_name(filename)
        target = collection_name(collection)
        size = len(data)
        if size > self.settings.max_document_bytes:
            raise UploadRefused(
                f"{name}: larger than {self.settings.max_document_bytes} bytes (CHAKOR_MAX_DOCUMENT_BYTES)"
            )
        await _reserve(user_id, size, self.settings)
        document: UploadedDocument | None = None
        try:
            try:
                kind, passages = await run_cpu(
                    _read_passages, name, data, self.settings.max_passages_per_document
                )
            except UnsupportedDocument as exc:
                raise UploadRefused(str(exc)) from None
            document = UploadedDocument(
                user_id=user_id, name=name, collection=target, kind=kind, bytes=size, passages=len(passages)
            )
            await document.insert()
            document_id = str(document.id)
            await self._write(self.index.add_owned, str(user_id), target, document_id, passages)
            marked = await UploadedDocument.get_pymongo_collection().update_one(
                {"_id": document.id}, {"$set": {"ready": True}}
            )
            if marked.matched_count == 0:  # deleted while it was being indexed: its passages go too
                await self._write(self.index.delete_owned, [document_id])
                raise NotFoundError("document not found (it was deleted while being indexed)")
            document.ready = True
            return document
        except BaseException:
            if document is not None and document.id is not None:
                await UploadedDocument.get_pymongo_collection().delete_one({"_id": document.id})
            await asyncio.shield(_release(user_id, 1, size))
            raise

    async def documents(self, user_id: PydanticObjectId, collection: str | None) -> list[UploadedDocument]:
        """The user's documents (in one collection when named), newest first; at most
        CHAKOR_MAX_DOCUMENTS_PER_USER of them exist, so the list is bounded."""
        query: dict[str, Any] = {"user_id": user_id}
        if collection is not None:
            query["collection"] = collection
        return await UploadedDocument.find(query).sort("-created_at").to_list()

    async def collections(self, user_id: PydanticObjectId, admin: bool) -> list[CollectionSummary]:
        """The user's collections, then the site's (with their sources for admins), by name."""
        own: dict[str, list[UploadedDocument]] = {}
        for document in await UploadedDocument.find({"user_id": user_id}).to_list():
            own.setdefault(document.collection, []).append(document)
        mine = [
            CollectionSummary(
                name, False, len(docs), sum(d.passages for d in docs), sum(d.bytes for d in docs)
            )
            for name, docs in sorted(own.items())
        ]
        site: list[Collection] = await asyncio.to_thread(self.index.collections)
        return mine + [
            CollectionSummary(c.name, True, c.files, c.passages, None, c.source if admin else None)
            for c in site
        ]

    async def delete_document(self, user_id: PydanticObjectId, document_id: str) -> bool:
        """Delete one of the user's documents from the index and the database; NotFoundError for an id
        that is missing or someone else's."""
        oid = object_id(document_id)
        found = await UploadedDocument.find_one({"_id": oid, "user_id": user_id}) if oid else None
        if found is None:
            raise NotFoundError("document not found")
        await self._remove(user_id, [found])
        return True

    async def delete_collection(self, user_id: PydanticObjectId, name: str) -> bool:
        """Delete all the user's documents in collection `name`; NotFoundError when they have none."""
        found = await UploadedDocument.find({"user_id": user_id, "collection": name}).to_list()
        if not found:
            raise NotFoundError("collection not found")
        await self._remove(user_id, found)
        return True

    async def _remove(self, user_id: PydanticObjectId, documents: list[UploadedDocument]) -> None:
        """Index first (a search stops finding them at once), then the rows and the quota."""
        await self._write(self.index.delete_owned, [str(d.id) for d in documents])
        ids = [d.id for d in documents]
        deleted = await UploadedDocument.get_pymongo_collection().delete_many(
            {"_id": {"$in": ids}, "user_id": user_id}
        )
        if deleted.deleted_count:
            await _release(user_id, deleted.deleted_count, sum(d.bytes for d in documents))

    async def delete_user_documents(self, user_id: PydanticObjectId) -> None:
        """Remove every passage of a user being deleted (their rows go with the user's other data)."""
        await self._write(self.index.delete_owner, str(user_id))

    async def delete_site_collection(self, name: str) -> bool:
        """Drop a site collection (`chakor docs remove` from the API); NotFoundError when unknown."""
        known = {c.name for c in await asyncio.to_thread(self.index.collections)}
        if name not in known:
            raise NotFoundError("collection not found")
        await self._write(self.index.remove, name)
        return True
