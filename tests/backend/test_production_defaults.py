"""Safe production defaults: JWT secret, sign-up policy, the first admin, the password policy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from common.settings import SettingsError, load_settings
from tests.conftest import JWT_SECRET
from tests.support.graphql import PASSWORD, Api

REGISTER = (
    "mutation($e: String!, $p: String!) { register(email: $e, password: $p) "
    "{ accessToken refreshToken user { id email role approved } } }"
)
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken user { role } } }"
APPROVE = "mutation($id: ID!) { approveUser(userId: $id) { id approved } }"
USERS = "query($s: String) { users(first: 5, search: $s) { edges { node { id role approved } } } }"


@pytest.mark.parametrize("secret", [None, "dev-insecure-change-me", "x" * 31])
def test_production_refuses_a_weak_jwt_secret(secret: str | None) -> None:
    overrides = {} if secret is None else {"jwt_secret": secret}
    with pytest.raises(SettingsError, match=r"CHAKOR_JWT_SECRET: .*at least 32 bytes"):
        load_settings(environment="production", **overrides)
    assert load_settings(environment="production", jwt_secret=JWT_SECRET).jwt_secret == JWT_SECRET


def test_backend_process_will_not_start_in_production_with_the_default_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAKOR_")}
    env["CHAKOR_ENVIRONMENT"] = "production"
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "CHAKOR_JWT_SECRET: Value error, production needs a secret of at least 32 bytes" in result.stderr


def test_signup_defaults_open_in_development_and_approval_in_production() -> None:
    assert load_settings().signup_policy == "open"
    assert load_settings(environment="production", jwt_secret=JWT_SECRET).signup_policy == "approval"
    assert (
        load_settings(environment="production", jwt_secret=JWT_SECRET, signup="open").signup_policy == "open"
    )


def _gql(client: TestClient, query: str, variables: dict[str, Any], token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def production_app(mongo_uri: str) -> Iterator[tuple[TestClient, str]]:
    """The app in production (sign-up by approval) on a fresh database, its admin from CHAKOR_ADMIN_EMAIL."""
    admin = f"boot-{uuid.uuid4().hex[:8]}@example.test"
    settings = load_settings(
        environment="production",
        jwt_secret=JWT_SECRET,
        mongodb_uri=mongo_uri,
        db_name=f"chakor_prod_{uuid.uuid4().hex[:8]}",
        admin_email=admin,
        admin_password=PASSWORD,
    )
    with TestClient(create_app(settings)) as client:
        yield client, admin


def test_approval_signup_waits_for_an_admin(production_app: tuple[TestClient, str]) -> None:
    client, admin_email = production_app
    boot = _gql(client, LOGIN, {"e": admin_email, "p": PASSWORD})["data"]["login"]
    assert boot["user"]["role"] == "ADMIN"  # CHAKOR_ADMIN_EMAIL made it at start-up

    made = _gql(client, REGISTER, {"e": "waiting@example.test", "p": PASSWORD})["data"]["register"]
    assert made == {"accessToken": None, "refreshToken": None, "user": None}
    waiting = _gql(client, USERS, {"s": "waiting@"}, boot["accessToken"])["data"]["users"]["edges"]
    [node] = [edge["node"] for edge in waiting]
    assert node["approved"] is False and node["role"] == "USER"
    refused = _gql(client, LOGIN, {"e": "waiting@example.test", "p": PASSWORD})["errors"][0]
    assert refused["message"] == "this account is waiting for an admin's approval"
    assert refused["extensions"]["code"] == "FORBIDDEN"

    user_id = node["id"]
    approved = _gql(client, APPROVE, {"id": user_id}, boot["accessToken"])["data"]["approveUser"]
    assert approved == {"id": user_id, "approved": True}
    assert _gql(client, LOGIN, {"e": "waiting@example.test", "p": PASSWORD})["data"]["login"]["user"] == {
        "role": "USER"
    }


def test_admin_email_never_promotes_an_existing_account(mongo_uri: str) -> None:
    db_name = f"chakor_boot_{uuid.uuid4().hex[:8]}"
    base = {"jwt_secret": JWT_SECRET, "mongodb_uri": mongo_uri, "db_name": db_name}
    with TestClient(create_app(load_settings(**base))) as client:  # development: sign-up open
        _gql(client, REGISTER, {"e": "squatter@example.test", "p": PASSWORD})
        first = _gql(client, LOGIN, {"e": "squatter@example.test", "p": PASSWORD})["data"]["login"]
        assert first["user"]["role"] == "USER"  # the first account is not an admin
    settings = load_settings(**base, admin_email="squatter@example.test", admin_password=PASSWORD)
    with TestClient(create_app(settings)) as client:
        login = _gql(client, LOGIN, {"e": "squatter@example.test", "p": PASSWORD})["data"]["login"]
        assert login["user"]["role"] == "USER"


def test_closed_signup_refuses(mongo_uri: str) -> None:
    settings = load_settings(
        jwt_secret=JWT_SECRET, mongodb_uri=mongo_uri, db_name="chakor_closed", signup="closed"
    )
    with TestClient(create_app(settings)) as client:
        error = _gql(client, REGISTER, {"e": "nope@example.test", "p": PASSWORD})["errors"][0]
    assert error["message"] == "sign-up is closed; ask an admin for an account"
    assert error["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("password", ["password123", "Qwertyuiop", "12345678"])
async def test_common_passwords_are_refused(api: Api, password: str) -> None:
    error = await api.error(REGISTER, {"e": f"common-{uuid.uuid4().hex[:6]}@example.test", "p": password})
    assert error["message"] == "this password is one of the most common ones; choose another"
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_login_limit_keys_on_the_forwarded_address_from_a_trusted_proxy(api: Api) -> None:
    """The test client connects from 127.0.0.1, a default CHAKOR_TRUSTED_PROXIES entry (like the web app)."""
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"

    async def attempt(address: str) -> dict:
        variables = {"e": f"nobody-{uuid.uuid4().hex[:8]}@example.test", "p": "wrong password"}
        response = await api.http.post(
            "/graphql",
            json={"query": login, "variables": variables},
            headers={"X-Forwarded-For": f"198.51.100.1, {address}"},  # the left hop is not believed
            timeout=300,  # 101 argon2 verifications queue for the hashing threads
        )
        return response.json()["errors"][0]

    # the per-client limit, CHAKOR_LOGIN_MAX_ATTEMPTS x 20 = 100, counted before argon2 runs: all at
    # once, so the window (60 s) holds them however long 101 dummy-hash verifications take here
    outcomes = await asyncio.gather(*(attempt("203.0.113.9") for _ in range(101)))
    codes = sorted(outcome["extensions"]["code"] for outcome in outcomes)
    assert codes == ["RATE_LIMITED"] + ["UNAUTHENTICATED"] * 100
    assert (await attempt("203.0.113.10"))["message"] == "invalid e-mail or password"
