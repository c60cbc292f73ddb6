"""The Reflex app's event WebSocket (the page's channel to its state) takes only the app's own Origin.

A page on another site could otherwise open it in the visitor's browser, with the visitor's cookie,
and drive their session (Reflex's default allowed origins are `*`).
"""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.frontend.conftest import Stack

pytestmark = pytest.mark.slow  # needs the app built and served, as the browser tests here


def _event_url(app_url: str) -> str:
    return app_url.replace("http://", "ws://", 1) + "/_event/?EIO=4&transport=websocket"


def test_a_foreign_origin_is_refused_and_the_apps_own_is_accepted(stack: Stack) -> None:
    with (
        pytest.raises(InvalidStatus) as refused,
        connect(_event_url(stack.app_url), origin=Origin("https://evil.example")),
    ):
        pass
    assert refused.value.response.status_code == 403  # the handshake is refused before the upgrade
    with connect(_event_url(stack.app_url), origin=Origin(stack.app_url)) as ws:
        opened = ws.recv()
    assert isinstance(opened, str) and opened.startswith('0{"sid":')  # engine.io's open packet
