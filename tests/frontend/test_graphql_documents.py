"""Every GraphQL document the web app sends is valid against the backend's schema (catches contract drift)."""

from __future__ import annotations

import importlib
import sys

import pytest
from _pytest.mark import ParameterSet
from graphql import parse, validate

from backend.api.schema import schema
from common import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "frontend"))
MODULES = [
    "chakor_web.state.auth",
    "chakor_web.state.chat",
    "chakor_web.state.admin",
    "chakor_web.state.settings",
    "chakor_web.state.conversation_tools",
    "chakor_web.state.api_keys",
    "chakor_web.state.documents",
    "chakor_web.server",
]
OPERATIONS = ("query", "mutation", "subscription")


def documents() -> list[ParameterSet]:
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if attr.isupper() and isinstance(value, str) and value.lstrip().startswith(OPERATIONS):
                found.append(pytest.param(value, id=f"{name}.{attr}"))
    return found


@pytest.mark.parametrize("document", documents())
def test_document_matches_schema(document: str) -> None:
    errors = validate(schema._schema, parse(document))
    assert not errors, [e.message for e in errors]
