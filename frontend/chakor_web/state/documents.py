"""The Documents page: upload files into your collections, list and delete them; the site's collections."""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx
from reflex.event import EventSpec

from chakor_web.api import ApiError
from chakor_web.state.auth import AuthState
from common.settings import get_settings

DOCUMENTS = "query { documents { id name collection kind bytes passages createdAt } }"
COLLECTIONS = "query { collections { name site documents passages } }"
UPLOAD = """mutation($file: Upload!, $collection: String) {
  uploadDocument(file: $file, collection: $collection) {
    __typename
    ... on Document { name passages }
    ... on UploadRefusal { message }
  }
}"""
DELETE = "mutation($id: ID!) { deleteDocument(id: $id) }"
UPLOAD_ID = "documents-upload"


@dataclass
class DocumentRow:
    """One of your files as the table shows it."""

    id: str = ""
    name: str = ""
    collection: str = ""
    size: str = ""
    passages: int = 0
    added: str = ""


@dataclass
class SiteCollection:
    """A collection every user searches (`chakor docs add`)."""

    name: str = ""
    documents: int = 0
    passages: int = 0


def size_text(size: int) -> str:
    """`size` bytes for people: B, KB or MB (powers of 1000, as file managers show them)."""
    if size < 1000:
        return f"{size} B"
    return f"{size / 1000:.1f} KB" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


class DocumentsState(AuthState):
    """The /documents page."""

    documents: rx.Field[list[DocumentRow]] = rx.field([])
    site_collections: rx.Field[list[SiteCollection]] = rx.field([])
    target_collection: str = ""
    documents_error: str = ""
    documents_note: str = ""
    # The browser's progress sending the files, 0-100 (shown below 100: the backend's part follows);
    # -1: no upload under way.
    upload_percent: int = -1

    async def _load(self) -> None:
        rows = (await self._gql(DOCUMENTS))["documents"]
        self.documents = [
            DocumentRow(
                d["id"], d["name"], d["collection"], size_text(d["bytes"]), d["passages"], d["createdAt"][:10]
            )
            for d in rows
        ]
        found = (await self._gql(COLLECTIONS))["collections"]
        self.site_collections = [
            SiteCollection(c["name"], c["documents"], c["passages"]) for c in found if c["site"]
        ]

    @rx.event
    async def open_page(self) -> EventSpec | None:
        if not self.logged_in:
            return rx.redirect("/login")
        self.documents_error = self.documents_note = ""
        try:
            await self._load()
        except ApiError as exc:
            self.documents_error = exc.message
        return self._expired_redirect()

    @rx.event
    def set_target_collection(self, value: str) -> None:
        self.target_collection = value

    def upload_progress(self, progress: dict[str, float]) -> None:
        """Reflex's progress of sending the files to this app (the backend's part follows); an event
        handler without `@rx.event`, the type `on_upload_progress` takes."""
        self.upload_percent = round(100 * float(progress.get("progress", 0)))

    @rx.event
    async def upload(self, files: list[rx.UploadFile]) -> EventSpec | None:
        """Send each dropped or chosen file to the backend; say what was stored and what was refused."""
        limit = get_settings().max_document_bytes  # the backend refuses larger files too
        stored, refused = [], []
        collection = self.target_collection.strip() or None
        for file in files:
            name = file.name or "document"
            data = await file.read(limit + 1)
            if len(data) > limit:
                refused.append(f"{name}: larger than {limit // 1_000_000} MB")
                continue
            try:
                result = (await self._gql(UPLOAD, {"collection": collection}, upload=(name, data)))[
                    "uploadDocument"
                ]
            except ApiError as exc:
                refused.append(f"{name}: {exc.message}")
                if not self.logged_in:
                    break
                continue
            if result["__typename"] == "Document":
                count = result["passages"]
                stored.append(f"{result['name']} ({count} passage{'' if count == 1 else 's'})")
            else:
                refused.append(result["message"])
        self.upload_percent = -1
        self.documents_note = "Added " + ", ".join(stored) + "." if stored else ""
        self.documents_error = " ".join(refused)
        try:
            await self._load()
        except ApiError as exc:
            self.documents_error = exc.message
        return self._expired_redirect()

    @rx.event
    async def delete(self, document_id: str) -> EventSpec | None:
        try:
            await self._gql(DELETE, {"id": document_id})
            await self._load()
        except ApiError as exc:
            self.documents_error = exc.message
        self.documents_note = ""
        return self._expired_redirect()
