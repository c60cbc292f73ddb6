"""Errors shown to API clients as-is; every other exception is masked as an internal error."""

from __future__ import annotations


class UserError(Exception):
    """An expected failure with a message safe to show to the client, and a stable code."""

    code = "BAD_REQUEST"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def extensions(self) -> dict[str, str]:
        """GraphQL error extensions (strawberry copies these into the response)."""
        return {"code": self.code}


class AuthError(UserError):
    """Missing, invalid or expired credentials."""

    code = "UNAUTHENTICATED"


class ForbiddenError(UserError):
    """Authenticated, but not allowed."""

    code = "FORBIDDEN"


class NotFoundError(UserError):
    """Missing or not the caller's: the two cases read the same so nothing leaks."""

    code = "NOT_FOUND"


class RateLimitedError(UserError):
    """Too many attempts in the current window."""

    code = "RATE_LIMITED"


class ValidationError(UserError):
    """An argument is out of range or malformed."""

    code = "BAD_USER_INPUT"
