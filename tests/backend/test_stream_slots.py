"""Stream slots on the database directly: the per-user limit across backends, and an expired lease
taken over by exactly one claimant.

The collection has no TTL index here, so expired leases stay until a claimant takes them over, as they
do on a real MongoDB between TTL sweeps (the embedded database drops them at once).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from beanie import PydanticObjectId, init_beanie
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from backend.core.errors import RateLimitedError
from backend.models import StreamLease
from backend.services.streams import StreamRegistry, StreamSlot

LIMIT = "too many answers in progress (at most 2 per user); wait or stop one"


@pytest.fixture
async def leases_db(mongo_uri: str) -> AsyncIterator[AsyncDatabase]:
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri, tz_aware=True)
    database = client[f"slots_{uuid4().hex[:8]}"]
    await init_beanie(database=database, document_models=[StreamLease], skip_indexes=True)
    yield database
    await client.drop_database(database.name)
    await client.close()


async def test_an_expired_slot_is_taken_over_by_one_claimant(leases_db: AsyncDatabase) -> None:
    here, there = StreamRegistry(2, "backend-a"), StreamRegistry(2, "backend-b")
    user = PydanticObjectId()
    first = await here.reserve(user, PydanticObjectId())
    second = await there.reserve(user, PydanticObjectId())
    assert (first.key, second.key) == (f"{user}:0", f"{user}:1")
    with pytest.raises(RateLimitedError, match=re.escape(LIMIT)):
        await here.reserve(user, PydanticObjectId())

    past = datetime.now(UTC) - timedelta(seconds=1)
    await leases_db.stream_leases.update_one({"_id": first.key}, {"$set": {"expires_at": past}})
    claims = await asyncio.gather(
        here.reserve(user, PydanticObjectId()),
        there.reserve(user, PydanticObjectId()),
        return_exceptions=True,
    )
    [won] = [claim for claim in claims if isinstance(claim, StreamSlot)]
    [refused] = [claim for claim in claims if isinstance(claim, RateLimitedError)]
    assert won.key == first.key and refused.message == LIMIT
    stored = await leases_db.stream_leases.find_one({"_id": first.key})
    assert stored["message_id"] == won.message_id and stored["expires_at"] > datetime.now(UTC)

    await here.release(first)  # the answer whose lease expired ends: its slot is another's now
    assert await leases_db.stream_leases.count_documents({}) == 2
    await here.release(won)
    await there.release(second)
    assert await leases_db.stream_leases.count_documents({}) == 0


async def test_slots_are_per_user(leases_db: AsyncDatabase) -> None:
    registry = StreamRegistry(1, "backend-a")
    alice, bob = PydanticObjectId(), PydanticObjectId()
    await registry.reserve(alice, PydanticObjectId())
    assert (await registry.reserve(bob, PydanticObjectId())).key == f"{bob}:0"
    with pytest.raises(RateLimitedError, match=r"at most 1 per user"):
        await registry.reserve(alice, PydanticObjectId())
