"""Who may call what, as Strawberry permission classes: signed-in users, and admins.

A failed check raises the service's own error (AuthError / ForbiddenError), so clients see the
same message and `extensions.code` on every field.
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission

from backend.api.context import Info
from backend.core.errors import ForbiddenError
from backend.models import Role, User


class IsAuthenticated(BasePermission):
    """An enabled, approved user with a valid token (checked afresh for each WebSocket operation)."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        await info.context.user()
        return True


class HasCredentials(BasePermission):
    """Valid credentials, the account check still running: for a resolver that starts work for the
    caller's id at once and awaits `Caller.user()` before it calls the model, writes or sends
    anything (the chat reads and tokenizes the prompt meanwhile)."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        await info.context.caller()
        return True


class IsAdmin(BasePermission):
    """An authenticated admin."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        check_admin(await info.context.user())
        return True


# The `permission_classes` of the resolvers: one list each, shared by every root type.
SIGNED_IN: list[type[BasePermission]] = [IsAuthenticated]
ADMINS: list[type[BasePermission]] = [IsAdmin]


def check_admin(user: User) -> User:
    """`user` when an admin; ForbiddenError otherwise."""
    if user.role != Role.ADMIN:
        raise ForbiddenError("admin only")
    return user
