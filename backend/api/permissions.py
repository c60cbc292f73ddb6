"""Who may call what: signed-in users, and admins."""

from __future__ import annotations

from backend.api.context import Info
from backend.core.errors import ForbiddenError
from backend.models import Role, User


async def require_user(info: Info) -> User:
    """The caller; AuthError when not signed in, disabled or holding a bad token."""
    return await info.context.user()


async def require_admin(info: Info) -> User:
    """The caller when an admin; ForbiddenError otherwise."""
    user = await require_user(info)
    if user.role != Role.ADMIN:
        raise ForbiddenError("admin only")
    return user
