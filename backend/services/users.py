"""Admin operations on users."""

from __future__ import annotations

from typing import Any

from backend.core.errors import NotFoundError, ValidationError
from backend.models import Conversation, Message, RefreshToken, Role, User
from backend.services.auth import revoke_all
from backend.services.pagination import after_filter, newest_first
from backend.services.validation import object_id, page_size, search_regex


async def get_user(user_id: str) -> User:
    """The user with `user_id`, or NotFoundError."""
    oid = object_id(user_id)
    user = await User.get(oid) if oid else None
    if user is None:
        raise NotFoundError("user not found")
    return user


async def list_users(
    first: int, after: str | None, search: str | None
) -> tuple[list[User], bool, str | None]:
    """A page of users, newest first, optionally matching `search` in e-mail or display name."""
    limit = page_size(first)
    query: dict[str, Any] = after_filter("created_at", after)
    if search:
        pattern = {"$regex": search_regex(search), "$options": "i"}
        query = {"$and": [query, {"$or": [{"email": pattern}, {"display_name": pattern}]}]}
    return await newest_first(User.find(query), "created_at", limit)


async def _other_admins(user: User) -> int:
    return await User.find({"role": Role.ADMIN.value, "disabled": False, "_id": {"$ne": user.id}}).count()


async def set_role(actor: User, user_id: str, role: Role) -> User:
    """Change a user's role; the last enabled admin cannot be demoted."""
    user = await get_user(user_id)
    if role == Role.USER and user.role == Role.ADMIN and await _other_admins(user) == 0:
        raise ValidationError("cannot demote the last admin")
    user.role = role
    await user.save()
    return user


async def set_disabled(actor: User, user_id: str, disabled: bool) -> User:
    """Disable (signing out at once) or re-enable a user; admins cannot disable themselves."""
    user = await get_user(user_id)
    if disabled and user.id == actor.id:
        raise ValidationError("you cannot disable your own account")
    user.disabled = disabled
    await user.save()
    if disabled:
        await revoke_all(user)
    return user


async def approve(user_id: str) -> User:
    """Let a sign-up that waits for approval sign in."""
    user = await get_user(user_id)
    user.approved = True
    await user.save()
    return user


async def delete_user(actor: User, user_id: str) -> bool:
    """Delete a user with their conversations, messages and refresh tokens."""
    user = await get_user(user_id)
    if user.id == actor.id:
        raise ValidationError("you cannot delete your own account")
    await Message.find(Message.user_id == user.id).delete()
    await Conversation.find(Conversation.user_id == user.id).delete()
    await RefreshToken.find(RefreshToken.user_id == user.id).delete()
    await user.delete()
    return True
