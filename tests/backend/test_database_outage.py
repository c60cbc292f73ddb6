"""The database sidecar restarted under a running backend: a clear error meanwhile, then recovery, no loss."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chakor.services import db_process
from common.process import free_port
from common.settings import load_settings
from tests.conftest import backend_settings, start_backend
from tests.support.graphql import Api
from tests.support.tiny_model import TinyModel

pytestmark = pytest.mark.slow
LIST = "{ conversations { edges { node { title } } } }"


async def test_database_restart(
    llama_server: str, tiny_model: TinyModel, tmp_path: Path, logs_dir: Path
) -> None:
    db_settings = load_settings(db_port=free_port(), db_storage="sqlite", var_dir=tmp_path, db_name="outage")
    database = db_process(db_settings, logs_dir / "outage").start().wait_healthy(timeout=60)
    settings = backend_settings(db_settings.database_uri, llama_server, tiny_model, db_name="outage")
    backend = start_backend(settings, logs_dir / "outage")
    try:
        async with httpx.AsyncClient(base_url=settings.backend_url, timeout=60) as http:
            api = Api(http, "")
            user = await api.register()
            await api.data('mutation { createConversation(title: "kept") { id } }', token=user.access_token)

            database.stop()
            error = await api.error(LIST, token=user.access_token)
            assert error["message"] == "database unavailable; try again shortly"
            assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            assert (await http.get("/healthz")).json() == {"status": "ok"}

            database = db_process(db_settings, logs_dir / "outage").start().wait_healthy(timeout=60)
            titles = (await api.data(LIST, token=user.access_token))["conversations"]["edges"]
            assert titles == [{"node": {"title": "kept"}}]
            assert (await api.login(user.email)).id == user.id
    finally:
        backend.stop()
        database.stop()
