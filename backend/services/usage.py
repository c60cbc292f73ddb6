"""Usage per user per UTC day (tokens in and out, answers) and the optional daily token quota."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from beanie import PydanticObjectId

from backend.core.errors import UserError, ValidationError
from backend.models import UsageDay

MAX_DAYS = 366


class QuotaExceeded(UserError):
    """The user's tokens for today are used up."""

    code = "QUOTA_EXCEEDED"


def today() -> str:
    """The current UTC day as YYYY-MM-DD."""
    return datetime.now(UTC).date().isoformat()


def prompt_tokens(timings: dict[str, Any], fallback: int) -> int:
    """Prompt tokens from llama-server's timings: evaluated (`prompt_n`) plus reused from cache (`cache_n`)."""
    evaluated = timings.get("prompt_n")
    if not isinstance(evaluated, int):
        return fallback
    cached = timings.get("cache_n")
    return evaluated + (cached if isinstance(cached, int) else 0)


async def record(user_id: PydanticObjectId, tokens_in: int, tokens_out: int) -> None:
    """Count one answer and its tokens on today's row (created on first use, atomically)."""
    await UsageDay.get_pymongo_collection().update_one(
        {"user_id": user_id, "day": today()},
        {"$inc": {"tokens_in": tokens_in, "tokens_out": tokens_out, "answers": 1}},
        upsert=True,
    )


async def check_quota(user_id: PydanticObjectId, quota: int) -> None:
    """QuotaExceeded when `quota` > 0 and today's tokens have reached it."""
    if quota <= 0:
        return
    row = await UsageDay.find_one({"user_id": user_id, "day": today()})
    used = row.tokens_in + row.tokens_out if row else 0
    if used >= quota:
        raise QuotaExceeded(f"daily token quota used up ({used} of {quota} tokens); it resets at 00:00 UTC")


def _since(days: int) -> str:
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"days must be between 1 and {MAX_DAYS}")
    return (datetime.now(UTC).date() - timedelta(days=days - 1)).isoformat()


async def user_days(user_id: PydanticObjectId, days: int) -> list[UsageDay]:
    """The user's rows of the last `days` days (today included), oldest first; days without use are absent."""
    return await UsageDay.find({"user_id": user_id, "day": {"$gte": _since(days)}}).sort("day").to_list()


async def all_days(days: int) -> list[UsageDay]:
    """Every user's rows of the last `days` days, by day then user."""
    return await UsageDay.find({"day": {"$gte": _since(days)}}).sort("day", "user_id").to_list()
