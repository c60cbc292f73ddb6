"""Your own documents: upload (a GraphQL multipart request on /graphql/upload), list, delete; the
site's collections, read by everyone and deleted by admins.

Every id or name a user sends is looked up with their own id: another user's reads as not found.
"""

from __future__ import annotations

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from backend.api.context import Info
from backend.api.document_types import Document, DocumentCollection, UploadDocumentResult, UploadRefusal
from backend.api.permissions import ADMINS, SIGNED_IN
from backend.core.errors import UserError
from backend.models import Role
from backend.models.common import oid

NOT_MULTIPART = "send the file as a GraphQL multipart request to /graphql/upload"


@strawberry.type
class DocumentsQuery:
    @strawberry.field(
        description="Your uploaded documents, newest first (in one collection when named).",
        permission_classes=SIGNED_IN,
    )
    async def documents(self, info: Info, collection: str | None = None) -> list[Document]:
        user = await info.context.user()
        found = await info.context.services.library.documents(oid(user), collection)
        return [Document.from_model(d) for d in found]

    @strawberry.field(
        description="The collections DOCUMENTS search covers for you: yours, then the site's "
        "(`chakor docs add`; their `source` shown to admins only).",
        permission_classes=SIGNED_IN,
    )
    async def collections(self, info: Info) -> list[DocumentCollection]:
        user = await info.context.user()
        found = await info.context.services.library.collections(oid(user), user.role == Role.ADMIN)
        return [DocumentCollection.from_summary(c) for c in found]


@strawberry.type
class DocumentsMutation:
    @strawberry.mutation(
        description="Upload a text, Markdown, HTML or PDF file into one of your collections (default "
        "`uploads`) for DOCUMENTS search. Only on /graphql/upload, as a GraphQL multipart request with an "
        "`Apollo-Require-Preflight` header; limits: CHAKOR_MAX_DOCUMENT_BYTES per file, "
        "CHAKOR_MAX_DOCUMENTS_PER_USER, CHAKOR_MAX_DOCUMENT_BYTES_PER_USER, "
        "CHAKOR_MAX_PASSAGES_PER_DOCUMENT.",
        permission_classes=SIGNED_IN,
    )
    async def upload_document(
        self, info: Info, file: Upload, collection: str | None = None
    ) -> UploadDocumentResult:
        user = await info.context.user()
        if not isinstance(file, UploadFile):
            return UploadRefusal(code="UPLOAD_REFUSED", message=NOT_MULTIPART)
        library = info.context.services.library
        limit = library.settings.max_document_bytes
        name = file.filename or "document"
        if file.size is not None and file.size > limit:
            return UploadRefusal(
                code="UPLOAD_REFUSED",
                message=f"{name}: larger than {limit} bytes (CHAKOR_MAX_DOCUMENT_BYTES)",
            )
        try:
            data = await file.read(limit + 1)
            stored = await library.upload(oid(user), name, data, collection)
        except UserError as exc:
            return UploadRefusal(code=exc.code, message=exc.message)
        finally:
            await file.close()
        return Document.from_model(stored)

    @strawberry.mutation(
        description="Delete one of your documents (from search at once); NOT_FOUND when missing or not yours.",
        permission_classes=SIGNED_IN,
    )
    async def delete_document(self, info: Info, id: strawberry.ID) -> bool:
        user = await info.context.user()
        return await info.context.services.library.delete_document(oid(user), str(id))

    @strawberry.mutation(
        description="Delete one of your collections and its documents; NOT_FOUND when you have none by that name.",
        permission_classes=SIGNED_IN,
    )
    async def delete_collection(self, info: Info, name: str) -> bool:
        user = await info.context.user()
        return await info.context.services.library.delete_collection(oid(user), name)

    @strawberry.mutation(
        description="Delete a site collection (what `chakor docs add` made) for everyone (admins only).",
        permission_classes=ADMINS,
    )
    async def delete_site_collection(self, info: Info, name: str) -> bool:
        return await info.context.services.library.delete_site_collection(name)
