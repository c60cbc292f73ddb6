"""Reliability fixtures: a llama-server of our own (the session one is never disturbed) and stack helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chakor.services import db_process
from common.process import ManagedProcess, free_port
from common.settings import Settings, load_settings
from tests.conftest import running_llama_server
from tests.support.tiny_model import TinyModel


@pytest.fixture(scope="package")
def own_llama(tiny_model: TinyModel, logs_dir: Path) -> Iterator[str]:
    """Base URL of a llama-server only the reliability tests use."""
    with running_llama_server(tiny_model.gguf_path, logs_dir) as url:
        yield url


def database_settings(var_dir: Path, storage: str = "sqlite") -> Settings:
    """Settings of a database sidecar on a free port keeping its SQLite file under `var_dir`."""
    return load_settings(db_port=free_port(), db_storage=storage, var_dir=var_dir)


def start_database(settings: Settings, logs_dir: Path) -> ManagedProcess:
    """The sidecar for `settings`, healthy; the caller stops it."""
    return db_process(settings, logs_dir).start().wait_healthy(timeout=60)
