"""GraphQL types of uploaded documents and collections."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from backend import models
from backend.models.common import oid
from backend.services.uploads import CollectionSummary


@strawberry.type(description="A file you uploaded, as DOCUMENTS search sees it.")
class Document:
    id: strawberry.ID
    name: str = strawberry.field(description="The file's name (no folders).")
    collection: str
    kind: str = strawberry.field(description="What it was read as: text, markdown, html or pdf.")
    bytes: int
    passages: int = strawberry.field(description="How many searchable passages it was cut into.")
    created_at: datetime

    @classmethod
    def from_model(cls, document: models.UploadedDocument) -> Document:
        return cls(
            id=strawberry.ID(str(oid(document))),
            name=document.name,
            collection=document.collection,
            kind=document.kind,
            bytes=document.bytes,
            passages=document.passages,
            created_at=document.created_at,
        )


@strawberry.type(description="The upload was refused; nothing was stored.")
class UploadRefusal:
    code: str = strawberry.field(description="UPLOAD_REFUSED, LIMIT_REACHED or BAD_USER_INPUT.")
    message: str = strawberry.field(description="What was wrong, naming the file (and the setting).")


UploadDocumentResult = Annotated[
    Document | UploadRefusal,
    strawberry.union("UploadDocumentResult", description="The stored document, or why it was refused."),
]


@strawberry.type(
    description="A collection DOCUMENTS search covers: yours, or the site's (shared, read-only)."
)
class DocumentCollection:
    name: str
    site: bool = strawberry.field(description="A site collection (`chakor docs add`), shared by every user.")
    documents: int = strawberry.field(description="Files in it.")
    passages: int
    bytes: int | None = strawberry.field(description="The size of your files; null for a site collection.")
    source: str | None = strawberry.field(description="What a site collection indexes (admins only).")

    @classmethod
    def from_summary(cls, summary: CollectionSummary) -> DocumentCollection:
        return cls(
            name=summary.name,
            site=summary.site,
            documents=summary.documents,
            passages=summary.passages,
            bytes=summary.bytes,
            source=summary.source,
        )
