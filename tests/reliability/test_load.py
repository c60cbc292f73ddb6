"""A short load run: chat streams plus query loops, 0 errors, every answer stored exactly as streamed.

The full-size run (64 streams + 200 query loops for 60 s) is `chakor bench` (benchmarks/test_concurrency_bench.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.process import ManagedProcess
from common.settings import Settings
from tests.conftest import backend_settings, start_backend
from tests.reliability.conftest import database_settings, start_database
from tests.reliability.load import run_load
from tests.support.tiny_model import TinyModel

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

STREAMS, QUERY_WORKERS, SECONDS = 16, 50, 20.0
RSS_GROWTH_LIMIT_MB = 256


@pytest.fixture
def stack(
    own_llama: str, tiny_model: TinyModel, logs_dir: Path, tmp_path: Path
) -> Iterator[tuple[Settings, ManagedProcess]]:
    db_settings = database_settings(tmp_path, storage="memory")
    database = start_database(db_settings, logs_dir)
    settings = backend_settings(db_settings.database_uri, own_llama, tiny_model, db_name="reliability_load")
    backend = start_backend(settings, logs_dir)
    try:
        yield settings, backend
    finally:
        backend.stop()
        database.stop()


async def test_load_has_no_errors_and_loses_nothing(
    stack: tuple[Settings, ManagedProcess], record_property: Callable[[str, object], None]
) -> None:
    settings, backend = stack
    assert backend.pid is not None
    report = await run_load(settings.graphql_url, backend.pid, STREAMS, QUERY_WORKERS, SECONDS, tag="test")
    for key, value in report.summary().items():
        record_property(key, value)
    print(f"\nload: {report.summary()}")
    assert report.errors == []
    assert report.lost == []
    assert report.chats >= STREAMS and report.queries >= QUERY_WORKERS
    assert report.rss_after_mb - report.rss_before_mb < RSS_GROWTH_LIMIT_MB
