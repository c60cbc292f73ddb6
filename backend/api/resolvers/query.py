"""Root queries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import strawberry

from backend.api.context import Info
from backend.api.permissions import ADMINS, SIGNED_IN
from backend.api.types import (
    Conversation,
    ConversationConnection,
    ConversationEdge,
    ModelInfo,
    PageInfo,
    SearchModeStatus,
    SearchResult,
    ServerStatus,
    User,
    UserConnection,
    UserEdge,
)
from backend.models import Role
from backend.models.common import oid
from backend.services import conversations, model_info, users
from backend.services.document_search import search_availability
from backend.services.pagination import encode_cursor
from backend.services.served_models import ServedModel
from common.chat import DOCUMENT_RESULTS


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in user.", permission_classes=SIGNED_IN)
    async def me(self, info: Info) -> User:
        return User.from_model(await info.context.user())

    @strawberry.field(
        description="Your conversations, most recently active first; `search` matches titles and text.",
        permission_classes=SIGNED_IN,
    )
    async def conversations(
        self, info: Info, first: int | None = 20, after: str | None = None, search: str | None = None
    ) -> ConversationConnection:
        user = await info.context.user()
        size = 20 if first is None else first
        found, has_next, end = await conversations.list_conversations(user, size, after, search)
        edges = [
            ConversationEdge(cursor=encode_cursor(c.updated_at, oid(c)), node=Conversation.from_model(c))
            for c in found
        ]
        return ConversationConnection(edges=edges, page_info=PageInfo(has_next_page=has_next, end_cursor=end))

    @strawberry.field(
        description="One of your conversations; null when missing or not yours.", permission_classes=SIGNED_IN
    )
    async def conversation(self, info: Info, id: strawberry.ID) -> Conversation | None:
        user = await info.context.user()
        found = await conversations.find_conversation(user, id)
        return Conversation.from_model(found) if found else None

    @strawberry.field(description="Search the web (Tavily).", permission_classes=SIGNED_IN)
    async def web_search(self, info: Info, query: str, max_results: int | None = 5) -> list[SearchResult]:
        count = 5 if max_results is None else max_results
        user = await info.context.user()
        results = await info.context.services.search.search(query, count, user_id=oid(user))
        return [SearchResult.from_model(r) for r in results]

    @strawberry.field(
        description="Search your documents and the site's collections (`chakor docs add`), narrowed to "
        "`collections` when given.",
        permission_classes=SIGNED_IN,
    )
    async def document_search(
        self,
        info: Info,
        query: str,
        max_results: int | None = DOCUMENT_RESULTS,
        collections: list[str] | None = None,
    ) -> list[SearchResult]:
        count = DOCUMENT_RESULTS if max_results is None else max_results
        user = await info.context.user()
        results = await info.context.services.documents.search(query, count, oid(user), collections)
        return [SearchResult.from_model(r) for r in results]

    @strawberry.field(description="Which search modes a chat turn can use now.", permission_classes=SIGNED_IN)
    async def search_modes(self, info: Info) -> list[SearchModeStatus]:
        services = info.context.services
        user = await info.context.user()
        availability = await search_availability(services.search, services.documents, oid(user))
        return [
            SearchModeStatus(mode=mode, available=reason is None, reason=reason)
            for mode, reason in availability.items()
        ]

    @strawberry.field(
        description="The default served model: GGUF metadata, quantization, context, lineage, verify report.",
        permission_classes=SIGNED_IN,
    )
    async def model(self, info: Info) -> ModelInfo:
        return await _model_info(info, info.context.services.models.default)

    @strawberry.field(
        description="Every served model (`chakor models`), the default first: card, kind, context, health.",
        permission_classes=SIGNED_IN,
    )
    async def models(self, info: Info) -> list[ModelInfo]:
        roster = info.context.services.models
        ordered = [roster.default, *(m for m in roster.models.values() if m is not roster.default)]
        return list(await asyncio.gather(*(_model_info(info, model) for model in ordered)))

    @strawberry.field(description="Users, newest first (admins only).", permission_classes=ADMINS)
    async def users(
        self, info: Info, first: int | None = 50, after: str | None = None, search: str | None = None
    ) -> UserConnection:
        size = 50 if first is None else first
        found, has_next, end = await users.list_users(size, after, search)
        edges = [UserEdge(cursor=encode_cursor(u.created_at, oid(u)), node=User.from_model(u)) for u in found]
        return UserConnection(edges=edges, page_info=PageInfo(has_next_page=has_next, end_cursor=end))

    @strawberry.field(
        description="Health of llama-servers, backend and database (admins only).", permission_classes=ADMINS
    )
    async def server_status(self, info: Info) -> ServerStatus:
        snapshot = await info.context.services.status.snapshot()
        return ServerStatus.from_status(snapshot, datetime.now(UTC), info.context.services.models)


async def _model_info(info: Info, model: ServedModel) -> ModelInfo:
    """`model`'s card as the caller may see it (paths cut to file names unless an admin asks)."""
    services = info.context.services
    details, up = await asyncio.gather(model_info.model_details(model.gguf_path, model.pool), model.is_up())
    if (await info.context.user()).role != Role.ADMIN:
        details = model_info.without_paths(details)
    return ModelInfo.from_details(details, model, model.name == services.models.default_name, up)
