"""Admin operations on users.

Each change is a `$set` of its own field, never a save of the whole document, so it cannot undo a
password change or a sign-out that landed between reading the user and writing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from backend.core.errors import NotFoundError, ValidationError
from backend.models import (
    ApiKey,
    Conversation,
    DocumentQuota,
    Message,
    RefreshToken,
    Role,
    StreamLease,
    UploadedDocument,
    UsageDay,
    User,
    WindowCounter,
)
from backend.services.auth import revoke_all
from backend.services.pagination import after_filter, newest_first
from backend.services.streams import WATCH_SECONDS, StreamRegistry
from backend.services.uploads import DocumentLibrary
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


# How long deleteUser waits for the user's answers to stop (on any backend) before deleting their
# data: a stop reaches another backend within WATCH_SECONDS, and the answer's final writes follow.
STOP_WAIT_SECONDS = 10.0


async def _set(user: User, **fields: Any) -> None:
    """Write `fields` of `user` alone (and on the object, for the answer)."""
    await User.get_pymongo_collection().update_one({"_id": user.id}, {"$set": fields})
    for name, value in fields.items():
        setattr(user, name, value)


async def _other_admins(user: User) -> int:
    return await User.find({"role": Role.ADMIN.value, "disabled": False, "_id": {"$ne": user.id}}).count()


async def set_role(actor: User, user_id: str, role: Role) -> User:
    """Change a user's role; the last enabled admin cannot be demoted."""
    user = await get_user(user_id)
    if role == Role.USER and user.role == Role.ADMIN and await _other_admins(user) == 0:
        raise ValidationError("cannot demote the last admin")
    await _set(user, role=role.value)
    user.role = role
    return user


async def set_disabled(actor: User, user_id: str, disabled: bool) -> User:
    """Disable (signing out at once) or re-enable a user; admins cannot disable themselves."""
    user = await get_user(user_id)
    if disabled and user.id == actor.id:
        raise ValidationError("you cannot disable your own account")
    await _set(user, disabled=disabled)
    if disabled:
        await revoke_all(user)
    return user


async def approve(user_id: str) -> User:
    """Let a sign-up that waits for approval sign in."""
    user = await get_user(user_id)
    await _set(user, approved=True)
    return user


async def _stop_answers(user: User, streams: StreamRegistry) -> None:
    """Stop the user's answers on every backend and wait (up to STOP_WAIT_SECONDS) until their
    leases are given back, which each answer does after its last write (its usage)."""
    await streams.stop_user(user.id)  # type: ignore[arg-type]
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while await StreamLease.find({"user_id": user.id}).count() and time.monotonic() < deadline:
        await asyncio.sleep(WATCH_SECONDS)


async def delete_user(actor: User, user_id: str, streams: StreamRegistry, library: DocumentLibrary) -> bool:
    """Delete a user and everything of theirs: conversations, messages, refresh tokens, API keys,
    usage, counters, stream leases and documents (their passages leave the index first). The account
    is disabled and signed out first and their answers are stopped, so nothing of theirs starts or is
    written again meanwhile."""
    user = await get_user(user_id)
    if user.id == actor.id:
        raise ValidationError("you cannot delete your own account")
    await _set(user, disabled=True)
    await revoke_all(user)
    await _stop_answers(user, streams)
    await library.delete_user_documents(user.id)  # type: ignore[arg-type]
    models = (Message, Conversation, RefreshToken, ApiKey, UsageDay, WindowCounter, StreamLease)
    for document in (*models, UploadedDocument, DocumentQuota):
        await document.get_pymongo_collection().delete_many({"user_id": user.id})
    await user.delete()
    return True
