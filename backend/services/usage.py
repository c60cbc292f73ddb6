"""Usage per user per UTC day (tokens in and out, answers) and the optional daily token quota,
reserved at admission and settled when the answer ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from pymongo import ReturnDocument

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


@dataclass(frozen=True)
class Reservation:
    """Tokens an admitted answer reserved on today's row (`day`), given back when it records its use."""

    user_id: PydanticObjectId
    day: str
    tokens: int


async def reserve(user_id: PydanticObjectId, estimate: int, quota: int) -> Reservation:
    """Reserve `estimate` tokens of today's quota for one answer, or QuotaExceeded.

    One atomic `$inc` (the row is made on first use): the tokens used and those every answer in
    progress reserved, before this one, must be below `quota`, so parallel answers cannot all pass
    a check that sees none of the others. A refused reservation is given back at once. `quota` 0
    (no quota) reserves nothing and reads nothing.
    """
    day = today()
    if quota <= 0:
        return Reservation(user_id, day, 0)
    row = await UsageDay.get_pymongo_collection().find_one_and_update(
        {"user_id": user_id, "day": day},
        {"$inc": {"reserved": estimate}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    row = row or {}  # an upsert returning the document after it always finds one
    used = row.get("tokens_in", 0) + row.get("tokens_out", 0) + row.get("reserved", 0) - estimate
    if used >= quota:
        await release(Reservation(user_id, day, estimate))
        raise QuotaExceeded(f"daily token quota used up ({used} of {quota} tokens); it resets at 00:00 UTC")
    return Reservation(user_id, day, estimate)


async def release(reservation: Reservation) -> None:
    """Give a reservation back unused (the answer was refused or spent nothing)."""
    if reservation.tokens:
        await UsageDay.get_pymongo_collection().update_one(
            {"user_id": reservation.user_id, "day": reservation.day},
            {"$inc": {"reserved": -reservation.tokens}},
        )


async def record(reservation: Reservation, tokens_in: int, tokens_out: int, model: str | None = None) -> None:
    """Count one answer and its tokens (and the answer for `model`, the served model's name, when given),
    giving its reservation back, in one `$inc`.

    The answer counts on the day it was admitted. Without a reservation the row is made on first use;
    with one it exists already, and is not made again for a user deleted meanwhile.
    """
    await UsageDay.get_pymongo_collection().update_one(
        {"user_id": reservation.user_id, "day": reservation.day},
        {
            "$inc": {
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "answers": 1,
                "reserved": -reservation.tokens,
                **({f"answers_by_model.{model}": 1} if model else {}),
            }
        },
        upsert=not reservation.tokens,
    )


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
