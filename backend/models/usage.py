"""Tokens and answers per user per UTC day."""

from __future__ import annotations

import pymongo
from beanie import Document, PydanticObjectId


class UsageDay(Document):
    """One user's usage on one UTC day (`day` is YYYY-MM-DD); incremented as answers end, and
    `web_searches` (Tavily calls) as each search is made.

    `reserved` is what the answers in progress may still spend: each reserves an estimate at
    admission and gives it back when it records what it spent, so the quota check sees them.
    """

    user_id: PydanticObjectId
    day: str
    tokens_in: int = 0
    tokens_out: int = 0
    answers: int = 0
    web_searches: int = 0
    reserved: int = 0
    # Answers per served model's name (`chakor models`; names hold no `.` or `$`, so each is a field).
    answers_by_model: dict[str, int] = {}

    class Settings:
        name = "usage_days"
        indexes = [
            pymongo.IndexModel([("user_id", pymongo.ASCENDING), ("day", pymongo.ASCENDING)], unique=True),
            pymongo.IndexModel([("day", pymongo.ASCENDING)]),
        ]
