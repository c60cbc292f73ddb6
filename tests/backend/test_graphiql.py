"""The GraphQL playground's page and files as the backend serves them (the browser test is tests/frontend)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.api.playground import PAGES, VENDORED
from backend.core.headers import PLAYGROUND_POLICY
from backend.main import create_app
from common.settings import load_settings
from tests.conftest import JWT_SECRET

HTML = {"Accept": "text/html"}


def _client(mongo_uri: str, **overrides: object) -> TestClient:
    settings = load_settings(
        jwt_secret=JWT_SECRET, mongodb_uri=mongo_uri, db_name="chakor_graphiql_page", **overrides
    )
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def development(mongo_uri: str) -> Iterator[TestClient]:
    with _client(mongo_uri) as client:
        yield client


def test_the_page_loads_only_files_of_this_backend(development: TestClient) -> None:
    page = development.get("/graphql", headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == PLAYGROUND_POLICY
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert references == [
        "/graphql/static/graphiql.min.css",
        "/graphql/static/playground.css",
        "/graphql/static/react.production.min.js",
        "/graphql/static/react-dom.production.min.js",
        "/graphql/static/graphiql.min.js",
        "/graphql/static/playground.js",
    ]


def test_the_files_are_the_installed_bundles(development: TestClient) -> None:
    assets = load_settings().graphiql_assets_dir
    expected = {name: assets / rel for name, rel in VENDORED.items()}
    expected |= {name: PAGES / name for name in ("playground.js", "playground.css")}
    for name, path in expected.items():
        assert path.is_file(), f"{path} is missing: run `bash frontend/setup.sh`"
        answer = development.get(f"/graphql/static/{name}")
        assert answer.status_code == 200
        assert answer.content == path.read_bytes()
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        assert answer.headers["content-type"].split(";")[0] == kind
        assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["package.json", "..%2F..%2Fmain.py", "graphiql.js", "index.html"])
def test_nothing_else_is_served(development: TestClient, name: str) -> None:
    assert development.get(f"/graphql/static/{name}").status_code == 404


def test_missing_files_are_named_not_a_page_that_hangs(
    mongo_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="chakor.backend"):
        client = _client(mongo_uri, graphiql_assets_dir=tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "GraphiQL assets missing" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path) in warnings[0] and "frontend/setup.sh" in warnings[0]
    with client:
        page = client.get("/graphql", headers=HTML)
        assert page.status_code == 503
        assert "GraphQL playground unavailable" in page.text
        assert str(tmp_path) in page.text and "bash frontend/setup.sh" in page.text
        assert "<script" not in page.text
        assert client.get("/graphql/static/graphiql.min.js").status_code == 404
        assert client.post("/graphql", json={"query": "{ __typename }"}).json() == {
            "data": {"__typename": "Query"}
        }


def test_production_serves_no_playground(mongo_uri: str) -> None:
    with _client(mongo_uri, environment="production") as client:
        assert client.get("/graphql", headers=HTML).status_code == 404
        for name in (*VENDORED, "playground.js"):
            assert client.get(f"/graphql/static/{name}").status_code == 404
