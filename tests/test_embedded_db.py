"""The embedded database keeps MongoDB's duplicate-key rules with its faster insert check
(chakor/sidecar/mongo_wire.py skips mongoeco's whole-collection `_id` scan for non-numeric ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tests.support.sidecar import ENGINES, running_sidecar


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicate_ids_and_unique_keys_are_still_refused(
    engine: Literal["memory", "sqlite"], tmp_path: Path
) -> None:
    with running_sidecar(engine, tmp_path) as uri, MongoClient(uri) as client:
        collection = client.chakor_test.messages
        collection.create_index("email", unique=True)
        first = ObjectId()
        collection.insert_many([{"_id": ObjectId(), "email": f"{i}@example.test"} for i in range(50)])
        collection.insert_one({"_id": first, "email": "a@example.test"})
        with pytest.raises(DuplicateKeyError):
            collection.insert_one({"_id": first, "email": "b@example.test"})
        with pytest.raises(DuplicateKeyError):
            collection.insert_one({"_id": ObjectId(), "email": "a@example.test"})
        collection.insert_one({"_id": 1, "email": "c@example.test"})
        with pytest.raises(DuplicateKeyError):  # equal as numbers: the scan still runs for numeric ids
            collection.insert_one({"_id": 1.0, "email": "d@example.test"})
        with pytest.raises(BulkWriteError):
            collection.insert_many([{"_id": first, "email": "e@example.test"}])
        assert collection.count_documents({}) == 52
        assert collection.find_one({"_id": first}) == {"_id": first, "email": "a@example.test"}
