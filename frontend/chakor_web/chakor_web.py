"""The Reflex app: routes and their on_load guards."""

from __future__ import annotations

from functools import partial

import reflex as rx

from chakor_web.components.admin import admin_page
from chakor_web.components.api_keys import api_keys_page
from chakor_web.components.auth import login_page, register_page
from chakor_web.components.chat import chat_page
from chakor_web.components.documents import documents_page
from chakor_web.components.settings import settings_page
from chakor_web.server import app_headers, routes
from chakor_web.state.admin import AdminState
from chakor_web.state.api_keys import ApiKeysState
from chakor_web.state.auth import AuthState
from chakor_web.state.chat import ChatState
from chakor_web.state.documents import DocumentsState
from chakor_web.state.settings import SettingsState
from common.response_headers import ResponseHeaders

app = rx.App(
    stylesheets=["/styles.css"], api_transformer=[routes(), partial(ResponseHeaders, rewrite=app_headers)]
)
app.add_page(chat_page, route="/", title="Chakor", on_load=[AuthState.restore_session, ChatState.open_page])
app.add_page(
    chat_page, route="/c/[cid]", title="Chakor", on_load=[AuthState.restore_session, ChatState.open_page]
)
app.add_page(
    login_page,
    route="/login",
    title="Log in · Chakor",
    on_load=[AuthState.restore_session, AuthState.clear_form],
)
app.add_page(
    register_page,
    route="/register",
    title="Register · Chakor",
    on_load=[AuthState.restore_session, AuthState.clear_form],
)
app.add_page(
    admin_page,
    route="/admin",
    title="Admin · Chakor",
    on_load=[AuthState.restore_session, AdminState.open_page],
)
app.add_page(
    settings_page,
    route="/settings",
    title="Settings · Chakor",
    on_load=[AuthState.restore_session, SettingsState.open_page],
)
app.add_page(
    api_keys_page,
    route="/keys",
    title="API keys · Chakor",
    on_load=[AuthState.restore_session, ApiKeysState.open_page],
)
app.add_page(
    documents_page,
    route="/documents",
    title="Documents · Chakor",
    on_load=[AuthState.restore_session, DocumentsState.open_page],
)
