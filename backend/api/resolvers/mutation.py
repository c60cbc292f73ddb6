"""Root mutations."""

from __future__ import annotations

import strawberry

from backend.api.context import Info
from backend.api.permissions import ADMINS, SIGNED_IN
from backend.api.types import AuthPayload, Conversation, ConversationInput, RegisterPayload, Role, User
from backend.models.common import oid
from backend.services import api_keys, auth, conversations, users
from backend.services.validation import object_id


def _payload(result: auth.AuthResult) -> AuthPayload:
    return AuthPayload(
        access_token=result.access_token,
        refresh_token=result.refresh_token,
        user=User.from_model(result.user),
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Create an account under the sign-up policy (CHAKOR_SIGNUP): `open` may sign in at "
        "once, `approval` once an admin approves it, `closed` refuses. The answer is the same whether or "
        "not the address had an account (tokens and user null): sign in with `login`. Rate limited per "
        "e-mail and per client."
    )
    async def register(
        self, info: Info, email: str, password: str, display_name: str | None = None
    ) -> RegisterPayload:
        services = info.context.services
        await auth.register(
            email,
            password,
            display_name,
            info.context.client_address,
            services.settings,
            services.login_limits,
        )
        return RegisterPayload()

    @strawberry.mutation(description="Sign in (rate limited per e-mail and per client).")
    async def login(self, info: Info, email: str, password: str) -> AuthPayload:
        services = info.context.services
        result = await auth.login(
            email, password, info.context.client_address, services.settings, services.login_limits
        )
        return _payload(result)

    @strawberry.mutation(description="Exchange a refresh token for new tokens (each works once).")
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthPayload:
        services = info.context.services
        return _payload(await auth.refresh(refresh_token, services.settings, services.streams))

    @strawberry.mutation(
        description="Revoke a refresh token and its family, and end the user's access tokens "
        "(other sessions refresh theirs); false when unknown."
    )
    async def logout(self, info: Info, refresh_token: str) -> bool:
        return await auth.logout(refresh_token, info.context.services.streams)

    @strawberry.mutation(
        description="Change your password (rate limited like login); every session is signed out, "
        "every API key revoked and your running answers stopped. Not with an API key.",
        permission_classes=SIGNED_IN,
    )
    async def change_password(self, info: Info, old_password: str, new_password: str) -> bool:
        user = await info.context.user()
        api_keys.refuse_api_key(info.context.authorization)
        services = info.context.services
        await auth.change_password(
            user,
            old_password,
            new_password,
            info.context.client_address,
            services.login_limits,
            services.streams,
        )
        return True

    @strawberry.mutation(description="Start an empty conversation.", permission_classes=SIGNED_IN)
    async def create_conversation(
        self, info: Info, title: str | None = None, input: ConversationInput | None = None
    ) -> Conversation:
        user = await info.context.user()
        changes = input.changes() if input else None
        settings = info.context.services.settings
        return Conversation.from_model(
            await conversations.create_conversation(user, title, settings, changes)
        )

    @strawberry.mutation(description="Rename one of your conversations.", permission_classes=SIGNED_IN)
    async def rename_conversation(self, info: Info, id: strawberry.ID, title: str) -> Conversation:
        user = await info.context.user()
        return Conversation.from_model(await conversations.rename_conversation(user, id, title))

    @strawberry.mutation(
        description="Delete one of your conversations and its messages.", permission_classes=SIGNED_IN
    )
    async def delete_conversation(self, info: Info, id: strawberry.ID) -> bool:
        user = await info.context.user()
        return await conversations.delete_conversation(user, id)

    @strawberry.mutation(
        description="Stop one of your answers that is streaming (on any backend); false when there is none.",
        permission_classes=SIGNED_IN,
    )
    async def stop_generation(self, info: Info, message_id: strawberry.ID) -> bool:
        user = await info.context.user()
        message = object_id(message_id)
        return message is not None and await info.context.services.streams.stop(message, oid(user))

    @strawberry.mutation(description="Change a user's role (admins only).", permission_classes=ADMINS)
    async def set_user_role(self, info: Info, user_id: strawberry.ID, role: Role) -> User:
        actor = await info.context.user()
        return User.from_model(await users.set_role(actor, user_id, role))

    @strawberry.mutation(
        description="Disable or re-enable a user (admins only); disabling signs them out and stops "
        "their answers in progress.",
        permission_classes=ADMINS,
    )
    async def set_user_disabled(self, info: Info, user_id: strawberry.ID, disabled: bool) -> User:
        actor = await info.context.user()
        user = await users.set_disabled(actor, user_id, disabled)
        if disabled:
            await info.context.services.streams.stop_user(oid(user))
        return User.from_model(user)

    @strawberry.mutation(
        description="Approve a sign-up waiting for approval (admins only).", permission_classes=ADMINS
    )
    async def approve_user(self, info: Info, user_id: strawberry.ID) -> User:
        return User.from_model(await users.approve(user_id))

    @strawberry.mutation(
        description="Delete a user with their conversations, API keys and usage, stopping their answers "
        "in progress (admins only).",
        permission_classes=ADMINS,
    )
    async def delete_user(self, info: Info, user_id: strawberry.ID) -> bool:
        actor = await info.context.user()
        services = info.context.services
        return await users.delete_user(actor, user_id, services.streams, services.library)
