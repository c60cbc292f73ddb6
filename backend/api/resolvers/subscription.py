"""Root subscriptions: chat streaming and live server status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import strawberry

from backend.api.context import Info
from backend.api.permissions import ADMINS, HasCredentials, check_admin
from backend.api.types import (
    ChatDone,
    ChatError,
    ChatEvent,
    ChatInput,
    ChatSources,
    ChatStarted,
    ChatToken,
    SearchResult,
    ServerStatus,
)
from backend.core.errors import ValidationError
from backend.services import chat as chat_service
from backend.services.document_search import chat_search_mode

MIN_INTERVAL_MS, MAX_INTERVAL_MS = 250, 60_000


def _event(event: chat_service.ChatEvent) -> ChatEvent:
    match event:
        case chat_service.Started():
            return ChatStarted(
                conversation_id=strawberry.ID(str(event.conversation_id)),
                user_message_id=strawberry.ID(str(event.user_message_id)),
                assistant_message_id=strawberry.ID(str(event.assistant_message_id)),
            )
        case chat_service.SourcesFound():
            results = [SearchResult.from_model(r) for r in event.results]
            return ChatSources(results=results, available=event.available, error=event.error)
        case chat_service.Token():
            return ChatToken(text=event.text)
        case chat_service.Done():
            return ChatDone(
                message_id=strawberry.ID(str(event.message_id)),
                tokens_predicted=event.tokens_predicted,
                tokens_per_second=event.tokens_per_second,
                finish_reason=event.finish_reason,
            )
        case _:
            return ChatError(code=event.code, message=event.message)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Send a message and stream the answer.", permission_classes=[HasCredentials]
    )
    async def chat(self, info: Info, input: ChatInput) -> AsyncGenerator[ChatEvent, None]:
        caller = await info.context.caller()  # the chat confirms the account before it stores anything
        try:
            mode = chat_search_mode(input.search, input.web_search)
        except ValidationError as exc:
            await caller.user()
            yield ChatError(code=exc.code, message=exc.message)
            return
        request = chat_service.ChatRequest(
            content=input.content,
            conversation_id=input.conversation_id,
            search=mode,
            regenerate=bool(input.regenerate),
            temperature=input.temperature,
            max_tokens=input.max_tokens,
            edit_of=input.edit_of,
            model=input.model,
            collections=input.collections,
        )
        async for event in chat_service.chat(caller, request, info.context.services.chat_deps):
            yield _event(event)

    @strawberry.subscription(
        description="Server status every `intervalMs` (admins only).", permission_classes=ADMINS
    )
    async def server_status(
        self, info: Info, interval_ms: int | None = 2000
    ) -> AsyncGenerator[ServerStatus, None]:
        interval_ms = 2000 if interval_ms is None else interval_ms
        if not MIN_INTERVAL_MS <= interval_ms <= MAX_INTERVAL_MS:
            raise ValidationError(f"intervalMs must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}")
        while True:
            check_admin(await info.context.user(fresh=True))  # every tick: a demoted admin stops here
            snapshot = await info.context.services.status.snapshot()
            yield ServerStatus.from_status(snapshot, datetime.now(UTC), info.context.services.models)
            await asyncio.sleep(interval_ms / 1000)
