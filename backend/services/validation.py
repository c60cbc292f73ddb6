"""Input checks shared by the services."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from beanie import PydanticObjectId
from bson.errors import InvalidId

from backend.core.errors import ValidationError

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}$")
MAX_TITLE_CHARS = 200
MAX_DISPLAY_NAME_CHARS = 100
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 256
MAX_SEARCH_CHARS = 200
MAX_PAGE_SIZE = 100
COMMON_PASSWORDS = Path(__file__).with_name("common_passwords.txt")
TOO_COMMON = "this password is one of the most common ones; choose another"


def normalize_email(email: str) -> str:
    """Lower-cased, trimmed e-mail; ValidationError when it does not look like one."""
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise ValidationError("invalid e-mail address")
    return email


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text().splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def check_password(password: str) -> str:
    """A password of acceptable length that is not on the built-in list of common passwords."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValidationError(
            f"password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long"
        )
    if "\x00" in password:
        raise ValidationError("password must not contain NUL characters")
    if password.lower() in _common_passwords():
        raise ValidationError(TOO_COMMON)
    return password


def clean_text(value: str, field: str, max_chars: int, allow_empty: bool = False) -> str:
    """Trim `value`; reject NULs, over-long and (unless allowed) empty values, naming `field`."""
    value = value.strip()
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters")
    if not value and not allow_empty:
        raise ValidationError(f"{field} must not be empty")
    if len(value) > max_chars:
        raise ValidationError(f"{field} must be at most {max_chars} characters")
    return value


def page_size(first: int) -> int:
    """A page size within 1..MAX_PAGE_SIZE."""
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise ValidationError(f"first must be between 1 and {MAX_PAGE_SIZE}")
    return first


def object_id(value: str) -> PydanticObjectId | None:
    """The ObjectId in `value`, or None when it is not one (callers then report not found)."""
    try:
        return PydanticObjectId(value)
    except (InvalidId, TypeError, ValueError):
        return None


def search_regex(text: str) -> str:
    """A case-insensitive-ready regex matching `text` literally (works on every MongoDB server)."""
    return re.escape(clean_text(text, "search", MAX_SEARCH_CHARS))
