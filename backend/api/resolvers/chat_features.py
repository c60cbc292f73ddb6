"""Queries and mutations for branches, conversation settings, export/import, API keys and usage.

Merged into the root types by `backend.api.schema`; every id a caller sends is checked against
their own documents (another user's id reads as not found).
"""

from __future__ import annotations

import strawberry

from backend.api.context import Info
from backend.api.permissions import ADMINS, SIGNED_IN
from backend.api.response_budget import charge
from backend.api.types import (
    ApiKey,
    ApiKeyCreated,
    Conversation,
    ConversationInput,
    ExportFormat,
    UsageDay,
    UserUsageDay,
)
from backend.models import User
from backend.services import api_keys, conversations, titles, transfer, usage


@strawberry.type
class ChatFeaturesQuery:
    @strawberry.field(
        description="One of your conversations as JSON (the whole tree) or Markdown (the active branch).",
        permission_classes=SIGNED_IN,
    )
    async def export_conversation(self, info: Info, id: strawberry.ID, format: ExportFormat) -> str:
        conversation = await conversations.get_conversation(await info.context.user(), id)
        if format == ExportFormat.MARKDOWN:
            exported = await transfer.export_markdown(conversation)
        else:
            exported = await transfer.export_json(conversation)
        charge(len(exported))
        return exported

    @strawberry.field(
        description="Your API keys, oldest first (secrets are never shown again).",
        permission_classes=SIGNED_IN,
    )
    async def api_keys(self, info: Info) -> list[ApiKey]:
        return [ApiKey.from_model(k) for k in await api_keys.list_keys(await info.context.user())]

    @strawberry.field(
        description="Your tokens and answers per UTC day over the last `days` days (days without use left out).",
        permission_classes=SIGNED_IN,
    )
    async def usage(self, info: Info, days: int = 30) -> list[UsageDay]:
        user = await info.context.user()
        return [UsageDay.from_model(row) for row in await usage.user_days(user.id, days)]  # type: ignore[arg-type]

    @strawberry.field(description="Every user's usage per UTC day (admins only).", permission_classes=ADMINS)
    async def usage_by_user(self, info: Info, days: int = 30) -> list[UserUsageDay]:
        rows = await usage.all_days(days)
        owners = await User.find({"_id": {"$in": list({row.user_id for row in rows})}}).to_list()
        emails = {u.id: u.email for u in owners}
        return [
            UserUsageDay(
                user_id=strawberry.ID(str(row.user_id)),
                email=emails.get(row.user_id),
                day=row.day,
                tokens_in=row.tokens_in,
                tokens_out=row.tokens_out,
                answers=row.answers,
            )
            for row in rows
        ]


@strawberry.type
class ChatFeaturesMutation:
    @strawberry.mutation(
        description="Change a conversation's title or settings (systemPrompt, temperature, maxTokens, model).",
        permission_classes=SIGNED_IN,
    )
    async def update_conversation(
        self, info: Info, id: strawberry.ID, input: ConversationInput
    ) -> Conversation:
        user = await info.context.user()
        changes = input.changes()
        if changes.model is not None:
            info.context.services.models.get(changes.model)  # UNKNOWN_MODEL names it
        return Conversation.from_model(await conversations.update_conversation(user, id, changes))

    @strawberry.mutation(
        description="Make the branch through one of your messages active (down to its newest answer).",
        permission_classes=SIGNED_IN,
    )
    async def select_branch(self, info: Info, message_id: strawberry.ID) -> Conversation:
        return Conversation.from_model(
            await conversations.select_branch(await info.context.user(), message_id)
        )

    @strawberry.mutation(
        description="Title a conversation from its first question and answer (the model's words when "
        "they make a clean title, else the question's first words); a title set by hand is kept. The "
        "model is asked once per conversation unless `again`; it takes a stream slot and counts toward "
        "your daily quota and usage like an answer.",
        permission_classes=SIGNED_IN,
    )
    async def generate_title(self, info: Info, id: strawberry.ID, again: bool = False) -> Conversation:
        caller = await info.context.caller()
        found = await titles.generate_title(caller, id, info.context.services.chat_deps, again)
        return Conversation.from_model(found)

    @strawberry.mutation(
        description="A new conversation from a JSON export (validated; ids in the file are replaced).",
        permission_classes=SIGNED_IN,
    )
    async def import_conversation(self, info: Info, data: str) -> Conversation:
        user, settings = await info.context.user(), info.context.services.settings
        return Conversation.from_model(await transfer.import_json(user, data, settings))

    @strawberry.mutation(
        description="A new API key (`Authorization: Bearer chk_...`, your rights, never an admin's); "
        "the secret is returned only now. Not with an API key.",
        permission_classes=SIGNED_IN,
    )
    async def create_api_key(self, info: Info, name: str) -> ApiKeyCreated:
        user = await info.context.user()
        api_keys.refuse_api_key(info.context.authorization)
        key, secret = await api_keys.create(user, name)
        return ApiKeyCreated(key=ApiKey.from_model(key), secret=secret)

    @strawberry.mutation(
        description="Revoke one of your API keys at once; the answers it is streaming end with an error.",
        permission_classes=SIGNED_IN,
    )
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> bool:
        user = await info.context.user()
        api_keys.refuse_api_key(info.context.authorization)
        return await api_keys.revoke(user, id, info.context.services.streams)
