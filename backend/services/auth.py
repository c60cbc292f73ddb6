"""Registration (under the sign-up policy), login, rotating refresh tokens with reuse detection,
and token authentication."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from beanie import PydanticObjectId
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from backend.core import security
from backend.core.config import Settings
from backend.core.errors import AuthError, ForbiddenError, RateLimitedError, ValidationError
from backend.core.offload import run_cpu
from backend.core.ratelimit import WindowLimiter
from backend.models import RefreshToken, Role, User
from backend.models.common import oid, utcnow
from backend.services import api_keys
from backend.services.streams import StreamRegistry
from backend.services.validation import (
    MAX_DISPLAY_NAME_CHARS,
    check_password,
    clean_text,
    normalize_email,
    object_id,
)

BAD_CREDENTIALS = "invalid e-mail or password"
CLIENT_ATTEMPTS_FACTOR = 20
REUSE_DETECTED = "refresh token reuse detected; every session of this login was revoked"
# What a running answer's client is told when the credentials it was started with die.
PASSWORD_CHANGED = "the password was changed; sign in again"
SESSIONS_REVOKED = "your sessions were revoked (a refresh token was used twice); sign in again"
SIGNED_OUT = "signed out; sign in again"
AWAITING_APPROVAL = "this account is waiting for an admin's approval"
SIGNUP_CLOSED = "sign-up is closed; ask an admin for an account"
EMAIL_TAKEN = "an account with this e-mail already exists"  # for admins (the CLI); never to sign-ups
log = logging.getLogger("chakor.backend")


@dataclass
class AuthResult:
    """What a successful login, registration or refresh hands back."""

    access_token: str
    refresh_token: str
    user: User


async def hash_password(password: str) -> str:
    """argon2id hash on the CPU pool (64 MiB and tens of ms each: never on the event loop)."""
    return await run_cpu(security.hash_password, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """argon2 verification on the CPU pool."""
    return await run_cpu(security.verify_password, password_hash, password)


async def create_user(
    email: str,
    password: str,
    display_name: str | None = None,
    admin: bool = False,
    approved: bool = True,
) -> User:
    """Store a new user (an admin only when asked: nobody becomes admin by being first)."""
    email = normalize_email(email)
    check_password(password)
    if display_name is not None:
        display_name = (
            clean_text(display_name, "displayName", MAX_DISPLAY_NAME_CHARS, allow_empty=True) or None
        )
    user = User(
        email=email,
        password_hash=await hash_password(password),
        display_name=display_name,
        role=Role.ADMIN if admin else Role.USER,
        approved=approved,
    )
    try:
        await user.insert()
    except DuplicateKeyError:
        raise ValidationError(EMAIL_TAKEN) from None
    return user


async def _issue(user: User, settings: Settings, family_id: str | None = None) -> AuthResult:
    refresh = security.new_refresh_token()
    await RefreshToken(
        user_id=user.id,
        family_id=family_id or secrets.token_hex(16),
        token_hash=security.hash_refresh_token(refresh),
        expires_at=utcnow() + timedelta(days=settings.refresh_token_days),
    ).insert()
    access = security.create_access_token(
        str(user.id), user.token_version, settings.jwt_secret, settings.access_token_minutes
    )
    return AuthResult(access_token=access, refresh_token=refresh, user=user)


async def register(
    email: str,
    password: str,
    display_name: str | None,
    client: str,
    settings: Settings,
    limits: LoginLimits,
) -> None:
    """Create an account under CHAKOR_SIGNUP (`open`: it may sign in at once, `approval`: once an
    admin approves it, `closed`: refused). Each attempt counts against the e-mail and the client
    first.

    The answer is the same whether or not the address has an account (nobody learns who signed up):
    the password is hashed either way, and the caller signs in with `login`, which fails for an
    address registered by someone else as for any wrong password.
    """
    policy = settings.signup_policy
    if policy == "closed":
        raise ForbiddenError(SIGNUP_CLOSED)
    await limits.signup(_email_key(email), client)
    try:
        await create_user(email, password, display_name, approved=policy == "open")
    except ValidationError as exc:
        if exc.message != EMAIL_TAKEN:
            raise


async def ensure_admin(settings: Settings) -> None:
    """Create the CHAKOR_ADMIN_EMAIL admin at start-up when no account has that e-mail.

    An existing account is never promoted: anyone may have registered the address first. The unique
    index makes concurrent start-ups of several backends create it once.
    """
    if not settings.admin_email:
        return
    if await User.find_one(User.email == normalize_email(settings.admin_email)) is not None:
        return
    if not settings.admin_password:
        log.warning("CHAKOR_ADMIN_EMAIL is set without CHAKOR_ADMIN_PASSWORD: no admin was created")
        return
    try:
        await create_user(settings.admin_email, settings.admin_password, admin=True)
        log.info("created the admin %s (CHAKOR_ADMIN_EMAIL)", settings.admin_email)
    except ValidationError as exc:  # a concurrent start-up made it, or the password is refused
        if exc.message != EMAIL_TAKEN:
            log.error("CHAKOR_ADMIN_PASSWORD refused (%s): no admin was created", exc.message)


@dataclass
class LoginLimits:
    """Password checks (login, changePassword) per e-mail and (more generous) per client address,
    and sign-ups per e-mail and per client; each attempt is counted before its argon2 runs."""

    per_email: WindowLimiter
    per_client: WindowLimiter
    signup_per_email: WindowLimiter
    signup_per_client: WindowLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimits:
        window, signups = settings.login_window_seconds, settings.signup_window_seconds
        return cls(
            WindowLimiter("email:", settings.login_max_attempts, window),
            WindowLimiter("client:", settings.login_max_attempts * CLIENT_ATTEMPTS_FACTOR, window),
            WindowLimiter("signup-email:", settings.login_max_attempts, signups, what="sign-up attempts"),
            WindowLimiter("signup-client:", settings.signup_max_attempts, signups, what="sign-up attempts"),
        )

    async def password_check(self, email: str, client: str) -> list[tuple[WindowLimiter, ObjectId]]:
        """Count one password check against the account and the client (RateLimitedError when either
        is used up, counting nothing); what to hand `succeeded` when the password was right."""
        counted: list[tuple[WindowLimiter, ObjectId]] = []
        try:
            for limiter, key in ((self.per_email, email), (self.per_client, client)):
                counted.append((limiter, await limiter.attempt(key)))
        except RateLimitedError:
            await self.succeeded(counted)  # the refused check counts against neither key
            raise
        return counted

    async def succeeded(self, attempts: list[tuple[WindowLimiter, ObjectId]]) -> None:
        """Take back a right password's own attempts: only failures stay counted, and the failures
        before it stay too."""
        for limiter, attempt in attempts:
            await limiter.forget(attempt)

    async def signup(self, email: str, client: str) -> None:
        """Count one sign-up against the e-mail and the client (RateLimitedError when either is used
        up); sign-ups stay counted whatever their outcome."""
        await self.signup_per_email.attempt(email)
        await self.signup_per_client.attempt(client)


def _email_key(email: str) -> str:
    return email.strip().lower()[:320]


_dummy: dict[str, str] = {}


async def _dummy_hash() -> str:
    """An argon2 hash of a random password, made once per process: verified for unknown e-mails so a
    login takes as long whether or not the address has an account."""
    if "hash" not in _dummy:
        _dummy["hash"] = await hash_password(secrets.token_urlsafe(16))
    return _dummy["hash"]


async def login(
    email: str, password: str, client: str, settings: Settings, limits: LoginLimits
) -> AuthResult:
    """Check credentials under the login rate limits (the attempt counts before the password is
    verified; an unknown e-mail verifies a dummy hash, so both cost the same argon2 time)."""
    email_key = _email_key(email)
    attempts = await limits.password_check(email_key, client)
    user = await User.find_one(User.email == email_key)
    stored = user.password_hash if user is not None else await _dummy_hash()
    if not await verify_password(stored, password) or user is None:
        raise AuthError(BAD_CREDENTIALS)
    await limits.succeeded(attempts)
    check_usable(user)
    return await _issue(user, settings)


async def refresh(token: str, settings: Settings, streams: StreamRegistry) -> AuthResult:
    """Rotate a refresh token; presenting an already used one revokes its whole family."""
    stored = await RefreshToken.find_one(RefreshToken.token_hash == security.hash_refresh_token(token))
    if stored is None:
        raise AuthError("invalid refresh token")
    user = await User.get(stored.user_id)
    if user is None:
        raise AuthError("invalid refresh token")
    check_usable(user)
    if stored.used:
        await _reused(user, stored.family_id, streams)
        raise AuthError(REUSE_DETECTED)
    if stored.revoked:
        raise AuthError("refresh token revoked")
    if stored.expires_at.astimezone(UTC) <= datetime.now(UTC):
        raise AuthError("refresh token expired")
    # Atomic claim: of two concurrent refreshes with one token, only one wins.
    claimed = await RefreshToken.get_pymongo_collection().update_one(
        {"_id": stored.id, "used": False, "revoked": False}, {"$set": {"used": True}}
    )
    if claimed.modified_count != 1:
        await _reused(user, stored.family_id, streams)
        raise AuthError(REUSE_DETECTED)
    return await _issue(user, settings, stored.family_id)


async def _reused(user: User, family_id: str, streams: StreamRegistry) -> None:
    """A refresh token came back twice (one of its holders is a thief): revoke the family, every
    access token (other sessions refresh theirs) and API key of the user, and stop their answers."""
    await revoke_family(family_id)
    await _bump_version(user.id)
    await api_keys.revoke_all(oid(user), streams, SESSIONS_REVOKED)
    await streams.stop_user(oid(user), SESSIONS_REVOKED)


async def revoke_family(family_id: str) -> None:
    """Revoke every token of a login's family."""
    await RefreshToken.get_pymongo_collection().update_many(
        {"family_id": family_id}, {"$set": {"revoked": True}}
    )


async def logout(token: str, streams: StreamRegistry) -> bool:
    """Revoke the family of `token` and every access token of its user (the token version moves on:
    other sessions get new ones with their refresh tokens), stopping the answers the user's sessions
    are streaming; API keys stay. False when the token is unknown."""
    stored = await RefreshToken.find_one(RefreshToken.token_hash == security.hash_refresh_token(token))
    if stored is None:
        return False
    await revoke_family(stored.family_id)
    await _bump_version(stored.user_id)
    await streams.stop_user(stored.user_id, SIGNED_OUT, sessions_only=True)
    return True


async def _bump_version(user_id: PydanticObjectId | None) -> None:
    await User.get_pymongo_collection().update_one({"_id": user_id}, {"$inc": {"token_version": 1}})


async def revoke_all(
    user: User, streams: StreamRegistry | None = None, reason: str | None = None, keys: bool = False
) -> None:
    """Invalidate every access and refresh token of `user` (and with `keys` every API key), and stop
    their running answers when given `streams` (their clients get `reason`)."""
    await RefreshToken.get_pymongo_collection().update_many({"user_id": user.id}, {"$set": {"revoked": True}})
    await _bump_version(user.id)
    user.token_version += 1
    if keys:
        await api_keys.revoke_all(oid(user), streams, reason or SESSIONS_REVOKED)
    if streams is not None:
        await streams.stop_user(oid(user), reason)


async def change_password(
    user: User,
    old_password: str,
    new_password: str,
    client: str,
    limits: LoginLimits,
    streams: StreamRegistry,
) -> None:
    """Replace the password after checking the old one (counted like a login, against the account's
    e-mail and the client, before it is verified); signs out every session, revokes every API key
    and stops the user's running answers."""
    attempts = await limits.password_check(user.email, client)
    if not await verify_password(user.password_hash, old_password):
        raise AuthError("current password is wrong")
    await limits.succeeded(attempts)
    check_password(new_password)
    await User.get_pymongo_collection().update_one(
        {"_id": user.id}, {"$set": {"password_hash": await hash_password(new_password)}}
    )
    await revoke_all(user, streams, PASSWORD_CHANGED, keys=True)


class AccountDisabled(AuthError):
    """The credentials name a disabled account: GraphQL reports it as any AuthError (UNAUTHENTICATED,
    "account disabled"); the OpenAI-compatible API tells it apart as a 403, as OpenAI does."""

    def __init__(self) -> None:
        super().__init__("account disabled")


def check_usable(user: User) -> None:
    """AccountDisabled (an AuthError) for a disabled account, ForbiddenError for one still waiting
    for approval."""
    if user.disabled:
        raise AccountDisabled
    if not user.approved:
        raise ForbiddenError(AWAITING_APPROVAL)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` value, or AuthError."""
    if not authorization:
        raise AuthError("authentication required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("invalid authorization header: expected 'Bearer <token>'")
    return token.strip()


def _claimed_id(token: str, settings: Settings) -> tuple[PydanticObjectId, int]:
    """The user id and token version an access JWT claims, once its signature and expiry check out."""
    claims = security.decode_access_token(token, settings.jwt_secret)
    user_id = object_id(claims.user_id)
    if user_id is None:
        raise AuthError("invalid access token")
    return user_id, claims.token_version


async def _account(user_id: PydanticObjectId, token_version: int) -> User:
    """The user a verified JWT names, if it still exists, may sign in and has not revoked the token."""
    found = await User.get_pymongo_collection().find_one({"_id": user_id})
    user = None if found is None else User.model_validate(found)  # a quarter less CPU than User.get
    if user is None:
        raise AuthError("invalid access token")
    check_usable(user)
    if user.token_version != token_version:
        raise AuthError("access token revoked")
    return user


@dataclass
class Caller:
    """Who a bearer token names, with the account check (a database read) possibly still running.

    Work that only needs the caller's id may start at once; `user()` must be awaited before anything
    is written or sent back for them.
    """

    id: PydanticObjectId
    account: asyncio.Future[User]
    key_id: PydanticObjectId | None = None  # the API key the request authenticated with, if any

    async def user(self) -> User:
        """The enabled, approved user, or the AuthError / ForbiddenError the account check raised."""
        return await asyncio.shield(self.account)


async def caller(authorization: str | None, settings: Settings) -> Caller:
    """The caller behind an `Authorization: Bearer <token>` value, or AuthError: the one place a
    credential becomes a user.

    An access JWT's signature and expiry are checked here and its account in the background; an API
    key (whose owner only the database knows) is checked in full and gives user rights only.
    """
    token = bearer_token(authorization)
    if token.startswith(api_keys.PREFIX):
        owner, key_id = await api_keys.owner(token)
        check_usable(owner)
        checked: asyncio.Future[User] = asyncio.get_running_loop().create_future()
        checked.set_result(owner)
        return Caller(oid(owner), checked, key_id)
    user_id, token_version = _claimed_id(token, settings)
    account = asyncio.ensure_future(_account(user_id, token_version))
    account.add_done_callback(_seen)
    return Caller(user_id, account)


def _seen(account: asyncio.Future[User]) -> None:
    """Mark a refusal as seen: an operation that ended before it looked (the client left) is no error."""
    if not account.cancelled():
        account.exception()
