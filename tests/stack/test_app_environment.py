"""The web app under `chakor up` (Reflex, its server and build tools) holds none of the stack's secrets."""

from __future__ import annotations

import psutil
import pytest

from chakor.services import FRONTEND_SETTINGS
from tests.stack.conftest import FullStack, wait_for

pytestmark = [pytest.mark.slow]


def test_no_process_of_the_web_app_has_a_secret_in_its_environment(full_stack: FullStack) -> None:
    wait_for(full_stack.all_healthy, 120, "every part healthy")
    components = full_stack.components()
    app = psutil.Process(components["frontend"]["pid"])
    processes = [app, *app.children(recursive=True)]
    backend_env = psutil.Process(components["backend"]["pid"]).environ()
    secrets = {
        name: backend_env[name]
        for name in ("CHAKOR_JWT_SECRET", "CHAKOR_LLAMA_API_KEY")
        if name in backend_env
    }
    assert set(secrets) == {"CHAKOR_JWT_SECRET", "CHAKOR_LLAMA_API_KEY"}  # the backend has them
    allowed = {f"CHAKOR_{name.upper()}" for name in FRONTEND_SETTINGS}
    for process in processes:
        env = process.environ()
        assert {name for name in env if name.startswith("CHAKOR_")} <= allowed, process.cmdline()
        assert not set(secrets.values()) & set(env.values()), process.cmdline()
