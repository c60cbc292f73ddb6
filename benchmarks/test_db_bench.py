"""The embedded database as the chat writes to it: one insert into a collection of 1x and 4x documents,
on both storage engines.

Each chat turn inserts two or three documents into collections that hold every message ever sent, so an
insert must cost the same however large they are. Target: median insert at 4x / at 1x <= 1.5.
mongoeco 4.11 alone reads the whole collection on every insert: here 3.7 ms at 1,000 documents and
11.8 ms at 4,000 in memory (3.2x), 21 and 78 ms in SQLite (3.7x). chakor/sidecar/mongo_wire.py removes
that scan: 0.65 ms and 1.8 ms at both sizes (1.01x).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.collection import Collection

from tests.support.sidecar import ENGINES, running_sidecar

BASE_DOCUMENTS = 1_000
TIMED_INSERTS = 100
TARGET_RATIO = 1.5


def _message() -> dict[str, Any]:
    """A document shaped like a stored message."""
    return {
        "_id": ObjectId(),
        "conversation_id": ObjectId(),
        "user_id": ObjectId(),
        "role": "assistant",
        "content": "An answer of a few sentences. " * 8,
        "status": "complete",
    }


def _fill(collection: Collection, count: int) -> None:
    while (missing := count - collection.estimated_document_count()) > 0:
        collection.insert_many([_message() for _ in range(min(500, missing))])


def _median_insert_ms(collection: Collection) -> float:
    times = []
    for _ in range(TIMED_INSERTS):
        started = time.perf_counter()
        collection.insert_one(_message())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.benchmark(group="embedded-db")
def test_insert_cost_does_not_grow_with_the_collection(
    benchmark: Any, engine: Literal["memory", "sqlite"], tmp_path: Path
) -> None:
    with running_sidecar(engine, tmp_path) as uri, MongoClient(uri) as client:
        collection = client.chakor_bench.messages
        collection.create_index([("conversation_id", 1)])
        medians: dict[int, float] = {}

        def measure() -> None:
            for size in (BASE_DOCUMENTS, 4 * BASE_DOCUMENTS):
                _fill(collection, size)
                medians[size] = _median_insert_ms(collection)

        benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = medians[4 * BASE_DOCUMENTS] / medians[BASE_DOCUMENTS]
    benchmark.extra_info.update(
        {
            "engine": engine,
            "insert_ms_1x": medians[BASE_DOCUMENTS],
            "insert_ms_4x": medians[4 * BASE_DOCUMENTS],
            "ratio_4x_over_1x": ratio,
            "target_ratio": TARGET_RATIO,
            "met": ratio <= TARGET_RATIO,
        }
    )
