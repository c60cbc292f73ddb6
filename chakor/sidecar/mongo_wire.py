"""The embedded database: mongoeco's MongoDB-wire server (run with .venv-db's Python >= 3.13).

usage: python mongo_wire.py HOST PORT (memory | PATH/TO/db.sqlite)
"""

import asyncio
import functools
import signal
import sys
from collections.abc import Callable
from typing import Any

from mongoeco.core.identity import id_contains_numeric_value
from mongoeco.engines import SQLiteEngine
from mongoeco.engines.memory import MemoryEngine
from mongoeco.wire import AsyncMongoEcoProxyServer


def _without_id_scan(
    check: Callable[..., None], exact_check: Callable[[dict[str, Any]], bool]
) -> Callable[..., None]:
    """`check` (an engine's unique-key check) without its scan of the whole collection for an `_id`
    that holds no number.

    mongoeco 4.11 reads every document of a collection on each single-document insert
    (`scan_payload_id`), to find `_id`s that are equal as numbers but stored differently (1 and 1.0):
    an insert into 4,000 messages took 11.8 ms (memory) and 78 ms (SQLite), 3.2x and 3.7x what it took
    into 1,000 (benchmarks/test_db_bench.py). For any other `_id` (our ObjectIds) the exact lookup the
    check makes first finds every duplicate, so the scan is skipped when that lookup runs
    (`exact_check`); numeric ids keep it.
    """

    @functools.wraps(check)
    def checked(self: object, db_name: str, coll_name: str, document: dict[str, Any], **options: Any) -> None:
        if (
            options.get("scan_payload_id")
            and exact_check(options)
            and not id_contains_numeric_value(document.get("_id"))
        ):
            options["scan_payload_id"] = False
        check(self, db_name, coll_name, document, **options)

    return checked


MemoryEngine._ensure_unique_indexes = _without_id_scan(  # type: ignore[method-assign]
    MemoryEngine._ensure_unique_indexes, lambda options: bool(options.get("check_id_storage"))
)
SQLiteEngine._validate_document_against_unique_indexes = _without_id_scan(  # type: ignore[method-assign]
    SQLiteEngine._validate_document_against_unique_indexes, lambda options: not options.get("skip_id_check")
)


async def serve(host: str, port: int, storage: str) -> None:
    engine = MemoryEngine() if storage == "memory" else SQLiteEngine(storage)
    server = AsyncMongoEcoProxyServer(engine=engine, host=host, port=port)
    address = await server.start()
    print(f"mongo-wire listening at {address.uri} storage={storage}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
