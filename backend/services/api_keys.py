"""API keys: `chk_` secrets for programmatic clients, shown once and stored as SHA-256 hashes.

A key acts with its owner's rights as a user, never an admin's: an admin's key is a user's key.
The secrets carry 256 random bits, so a fast hash suffices (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from beanie import PydanticObjectId

from backend.core.errors import AuthError, ForbiddenError, NotFoundError, ValidationError
from backend.models import ApiKey, Role, User
from backend.models.common import oid, utcnow
from backend.services.streams import StreamRegistry
from backend.services.validation import clean_text, object_id

PREFIX = "chk_"
PREFIX_CHARS = 12  # "chk_" and 8 characters of the secret: enough to tell a user's keys apart
MAX_NAME_CHARS = 100
MAX_KEYS_PER_USER = 50
LAST_USED_RESOLUTION = timedelta(minutes=1)  # lastUsedAt is written at most once a minute per key
NOT_WITH_A_KEY = "API keys cannot manage API keys or passwords; sign in with your password"
KEY_REVOKED = "the API key this answer was started with was revoked"


def hash_key(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def is_api_key(token: str | None) -> bool:
    """Whether a bearer token (or a whole `Bearer ...` header value) is an API key."""
    if not token:
        return False
    value = token.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value.startswith(PREFIX)


def refuse_api_key(authorization: str | None) -> None:
    """ForbiddenError when the request authenticated with an API key."""
    if is_api_key(authorization):
        raise ForbiddenError(NOT_WITH_A_KEY)


async def create(user: User, name: str) -> tuple[ApiKey, str]:
    """A new key for `user` and its secret (returned only here)."""
    clean = clean_text(name, "name", MAX_NAME_CHARS)
    if await ApiKey.find({"user_id": user.id}).count() >= MAX_KEYS_PER_USER:
        raise ValidationError(f"at most {MAX_KEYS_PER_USER} API keys per user; revoke one first")
    secret = PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(user_id=oid(user), name=clean, prefix=secret[:PREFIX_CHARS], key_hash=hash_key(secret))
    await key.insert()
    return key, secret


async def list_keys(user: User) -> list[ApiKey]:
    """The user's keys, oldest first."""
    return await ApiKey.find({"user_id": user.id}).sort("created_at", "_id").to_list()


async def revoke(user: User, key_id: str, streams: StreamRegistry) -> bool:
    """Delete one of the user's keys and stop the answers it started, on every backend (their
    clients get KEY_REVOKED); NotFoundError when it is not theirs."""
    target = object_id(key_id)
    result = (
        await ApiKey.get_pymongo_collection().delete_one({"_id": target, "user_id": user.id})
        if target
        else None
    )
    if target is None or result is None or result.deleted_count != 1:
        raise NotFoundError("API key not found")
    await streams.stop_keys([target], KEY_REVOKED)
    return True


async def revoke_all(user_id: PydanticObjectId, streams: StreamRegistry | None, reason: str) -> int:
    """Delete every key of the user and (given `streams`) stop the answers they started, whose
    clients get `reason`; how many keys."""
    collection = ApiKey.get_pymongo_collection()
    keys = [key["_id"] async for key in collection.find({"user_id": user_id}, {"_id": 1})]
    if not keys:
        return 0
    await collection.delete_many({"_id": {"$in": keys}})
    if streams is not None:
        await streams.stop_keys(keys, reason)
    return len(keys)


async def owner(secret: str) -> tuple[User, PydanticObjectId]:
    """The user a key belongs to, with user rights only, and the key's id; AuthError for an unknown
    or revoked key.

    The caller still checks that the account is usable (enabled, approved).
    """
    key = await ApiKey.find_one({"key_hash": hash_key(secret)})
    user = await User.get(key.user_id) if key else None
    if key is None or key.id is None or user is None:
        raise AuthError("invalid or revoked API key")
    now = utcnow()
    await ApiKey.get_pymongo_collection().update_one(
        {
            "_id": key.id,
            "$or": [{"last_used_at": None}, {"last_used_at": {"$lt": now - LAST_USED_RESOLUTION}}],
        },
        {"$set": {"last_used_at": now}},
    )
    return (user.model_copy(update={"role": Role.USER}) if user.role != Role.USER else user), key.id
