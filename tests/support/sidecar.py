"""The embedded database sidecar on either storage engine, for tests and benchmarks that compare them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from chakor.services import db_process
from common.process import free_port
from common.settings import load_settings

ENGINES: tuple[Literal["memory", "sqlite"], ...] = ("memory", "sqlite")


@contextmanager
def running_sidecar(engine: Literal["memory", "sqlite"], workdir: Path) -> Iterator[str]:
    """A fresh sidecar storing in `engine` (SQLite files under `workdir`) for the block; its URI."""
    settings = load_settings(db_port=free_port(), db_storage=engine, var_dir=workdir)
    process = db_process(settings, workdir).start()
    try:
        process.wait_healthy(timeout=60)
        yield settings.database_uri
    finally:
        process.stop()
