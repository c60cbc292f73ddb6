"""What the API shows a user about the server (file names, not paths) and what its log keeps of refusals."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
from graphql import GraphQLError

from backend.api.schema import log_error
from tests.conftest import Backend
from tests.support.graphql import Api, Session

MODEL = "{ model { name path } }"


async def test_model_shows_users_the_file_name_and_admins_the_path(
    api: Api, alice: Session, admin: Session, backend: Backend
) -> None:
    gguf = backend.settings.model_path
    assert gguf is not None and gguf.is_absolute()
    seen_by_user = (await api.data(MODEL, token=alice.access_token))["model"]
    seen_by_admin = (await api.data(MODEL, token=admin.access_token))["model"]
    assert seen_by_user["path"] == gguf.name
    assert str(gguf.parent) not in str(await api.call(MODEL, token=alice.access_token))
    assert seen_by_admin["path"] == str(gguf)


def _new_lines(log: Path, offset: int) -> list[str]:
    return log.read_bytes()[offset:].decode(errors="replace").splitlines()


async def test_expected_refusals_log_one_info_line_each_and_no_traceback(
    api: Api, alice: Session, backend: Backend
) -> None:
    """A failed login, an unknown field and an argument out of range each log one line at INFO."""
    log = backend.process.log_path
    offset = log.stat().st_size
    marker = f"nosuchfield{uuid.uuid4().hex[:8]}"
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    failed = await api.error(login, {"e": alice.email, "p": "wrong password"})
    unknown = await api.call(f"{{ {marker} }}")
    bad = await api.error('{ documentSearch(query: "x", maxResults: 11) { url } }', token=alice.access_token)
    assert failed["extensions"]["code"] == "UNAUTHENTICATED" and unknown["errors"]
    assert bad["extensions"]["code"] == "BAD_USER_INPUT"
    expected = [
        f"INFO chakor.backend: refused login: UNAUTHENTICATED: {failed['message']}",
        f"INFO chakor.backend: refused -: GRAPHQL_VALIDATION_FAILED: {unknown['errors'][0]['message']}",
        f"INFO chakor.backend: refused documentSearch: BAD_USER_INPUT: {bad['message']}",
    ]
    for _ in range(50):  # the backend writes its log line as it answers; give the file a moment
        lines = _new_lines(log, offset)
        if all(any(line.endswith(e) for line in lines) for e in expected):
            break
        await asyncio.sleep(0.1)
    for entry in expected:
        assert len([line for line in lines if line.endswith(entry)]) == 1, (entry, lines)
    assert not [line for line in lines if "Traceback" in line or "ERROR" in line], lines


def test_an_unexpected_error_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise KeyError("boom")
    except KeyError as exc:
        error = GraphQLError("boom", path=["me"], original_error=exc)
    with caplog.at_level(logging.INFO, logger="chakor.backend"):
        log_error(error)
    [record] = caplog.records
    assert (record.levelname, record.getMessage()) == ("ERROR", "unexpected error in ['me']")
    assert record.exc_info is not None and record.exc_info[1] is error.original_error
    assert "Traceback" in caplog.text and "KeyError: 'boom'" in caplog.text
