"""Users and their refresh tokens."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field

from backend.models.common import utcnow


class Role(StrEnum):
    """What a user may do: admins also manage users and see server status."""

    USER = "user"
    ADMIN = "admin"


class User(Document):
    """An account; `email` is stored lower-cased and unique."""

    email: Indexed(str, unique=True)  # type: ignore[valid-type]
    password_hash: str
    display_name: str | None = None
    role: Role = Role.USER
    disabled: bool = False
    approved: bool = True  # False while a sign-up waits for an admin (CHAKOR_SIGNUP=approval)
    token_version: int = 0
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "users"


class RefreshToken(Document):
    """One rotating refresh token (its SHA-256), in a family that starts at login."""

    user_id: PydanticObjectId
    family_id: str
    token_hash: Indexed(str, unique=True)  # type: ignore[valid-type]
    used: bool = False
    revoked: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime

    class Settings:
        name = "refresh_tokens"
        indexes = [
            pymongo.IndexModel([("family_id", pymongo.ASCENDING)]),
            pymongo.IndexModel([("user_id", pymongo.ASCENDING)]),
            pymongo.IndexModel([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0),
        ]
