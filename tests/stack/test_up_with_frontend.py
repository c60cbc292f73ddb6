"""`chakor up` with the web app: every part healthy, the app's login page served, crashed parts restarted."""

from __future__ import annotations

import os
import signal
import uuid

import httpx
import psutil
import pytest

from tests.stack.conftest import COMPONENTS, FullStack, wait_for
from tests.support.graphql import AUTH_FIELDS, PASSWORD
from tests.support.listeners import listener

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

REGISTER = f"mutation($e: String!, $p: String!) {{ register(email: $e, password: $p) {{ {AUTH_FIELDS} }} }}"
REGISTERED = ("accessToken", "refreshToken", "user")  # null alike for every address: sign in with login
RESTART_SECONDS = {"database": 60, "backend": 120, "frontend": 900}  # the app is built again


def register(stack: FullStack) -> str:
    """A new account, made through the backend's API; its e-mail."""
    email = f"user-{uuid.uuid4().hex[:8]}@example.test"
    response = httpx.post(
        f"{stack.url('BACKEND')}/graphql", json={"query": REGISTER, "variables": {"e": email, "p": PASSWORD}}
    )
    assert response.json() == {"data": {"register": {f: None for f in REGISTERED}}}, response.text
    return email


def app_login(stack: FullStack, email: str) -> httpx.Response:
    """Log in through the web app's form endpoint (the path a browser takes: app -> backend -> database)."""
    app = stack.url("FRONTEND")
    return httpx.post(
        f"{app}/_chakor/login",
        data={"email": email, "password": PASSWORD},
        headers={"Origin": app},
    )


def test_status_reports_every_part_healthy_and_the_app_serves_its_login_page(full_stack: FullStack) -> None:
    wait_for(full_stack.all_healthy, 120, "every part healthy")
    rows = full_stack.status_rows()
    assert list(rows) == COMPONENTS
    for name, port in zip(COMPONENTS, ["DB", "LLAMA", "BACKEND", "FRONTEND"], strict=True):
        assert rows[name][0] == "healthy"
        assert rows[name][2] == f"127.0.0.1:{full_stack.env[f'CHAKOR_{port}_PORT']}"
    page = httpx.get(f"{full_stack.url('FRONTEND')}/login", follow_redirects=True)
    assert page.status_code == 200
    assert "<title>Log in · Chakor</title>" in page.text
    assert "No account yet? " in page.text
    login = app_login(full_stack, register(full_stack))
    assert (login.status_code, login.headers["location"]) == (303, "/")
    assert "chakor_session=" in login.headers["set-cookie"]


@pytest.mark.parametrize("name", ["database", "backend", "frontend"])
def test_a_killed_part_is_restarted_with_backoff_and_keeps_its_data(full_stack: FullStack, name: str) -> None:
    wait_for(full_stack.all_healthy, 120, "every part healthy")
    email = register(full_stack)  # stored before the crash
    before = full_stack.components()[name]
    exited = f"{name} exited (code -9); restarting in 1s"
    restarted = f"✓ {name} restarted"
    seen = (full_stack.log().count(exited), full_stack.log().count(restarted))
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> bool:
        now = full_stack.components()[name]
        return bool(now["restarts"] == before["restarts"] + 1 and now["pid"] != before["pid"])

    wait_for(back, RESTART_SECONDS[name], f"{name} restarted")
    wait_for(full_stack.all_healthy, 120, "every part healthy again")
    assert (full_stack.log().count(exited), full_stack.log().count(restarted)) == (seen[0] + 1, seen[1] + 1)
    assert full_stack.status_rows()[name][4] == str(before["restarts"] + 1)
    now = full_stack.components()[name]
    tree = {now["pid"], *(child.pid for child in psutil.Process(now["pid"]).children(recursive=True))}
    assert listener(now["port"]) in tree  # the new process serves, not one the killed one left behind

    def logged_in() -> bool:  # the backend may need a moment to reach the restarted database
        response = app_login(full_stack, email)
        return (response.status_code, response.headers.get("location")) == (303, "/")

    wait_for(logged_in, 60, "log in with the account made before the crash")
