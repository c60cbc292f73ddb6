"""Password hashing (argon2), access JWTs (HS256, explicit algorithm) and refresh-token secrets."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from backend.core.errors import AuthError

JWT_ALGORITHM = "HS256"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash` (False on any mismatch or bad hash)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class AccessClaims:
    """The claims of a valid access token."""

    user_id: str
    token_version: int


def create_access_token(user_id: str, token_version: int, secret: str, minutes: int) -> str:
    """A short-lived signed access token for `user_id`."""
    now = datetime.now(UTC)
    claims = {
        "sub": user_id,
        "ver": token_version,
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(minutes=minutes),
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def decode_access_token(token: str, secret: str) -> AccessClaims:
    """Verify signature, algorithm and expiry; raise AuthError with the reason otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "exp", "iat", "ver", "typ"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("access token expired") from None
    except jwt.InvalidTokenError:
        raise AuthError("invalid access token") from None
    if claims["typ"] != "access" or not isinstance(claims["ver"], int):
        raise AuthError("invalid access token")
    return AccessClaims(user_id=str(claims["sub"]), token_version=claims["ver"])


def new_refresh_token() -> str:
    """A fresh high-entropy refresh-token secret (returned to the client once)."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """The stored form of a refresh token (SHA-256: the secret is random, not a password)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
