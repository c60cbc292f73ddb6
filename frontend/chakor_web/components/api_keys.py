"""The API keys page: keys for scripts and programmatic clients (`Authorization: Bearer chk_...`)."""

from __future__ import annotations

import reflex as rx

from chakor_web.components.layout import frame, labeled_input
from chakor_web.state.api_keys import ApiKeysState, KeyRow
from common.settings import get_settings


def _row(key: KeyRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(key.name),
        rx.table.cell(rx.code(key.prefix + "…")),
        rx.table.cell(key.created),
        rx.table.cell(key.last_used),
        rx.table.cell(
            rx.button(
                "Revoke",
                on_click=ApiKeysState.revoke(key.id),
                color_scheme="red",
                variant="soft",
                size="1",
                aria_label="Revoke " + key.name,
            )
        ),
    )


def openai_base_url() -> rx.Component:
    """Where OpenAI clients (the SDKs, LangChain, lm-eval) point with a key: CHAKOR_PUBLIC_URL's `/v1`."""
    return rx.text(
        "OpenAI-compatible clients use the same key as `api_key` with the base URL ",
        rx.code(get_settings().openai_base_url, id="openai-base-url"),
        " (GET /models, POST /chat/completions).",
        size="2",
    )


def api_keys_page() -> rx.Component:
    create = rx.form(
        rx.hstack(
            labeled_input("Key name", "name", placeholder="e.g. my laptop", max_length=100),
            rx.button("Create key", type="submit"),
            align="end",
            width="100%",
        ),
        on_submit=ApiKeysState.create,
        reset_on_submit=True,
        width="100%",
    )
    secret = rx.cond(
        ApiKeysState.new_secret != "",
        rx.callout(
            rx.vstack(
                rx.text("Copy the new key now: it is not shown again."),
                rx.hstack(
                    rx.code(ApiKeysState.new_secret, id="new-secret"),
                    rx.icon_button(
                        rx.icon("copy", size=14),
                        on_click=rx.set_clipboard(ApiKeysState.new_secret),
                        aria_label="Copy key",
                        size="1",
                        variant="soft",
                    ),
                    align="center",
                ),
            ),
            icon="key",
            role="status",
        ),
    )
    table = rx.cond(
        ApiKeysState.keys.length() > 0,
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("Name"),
                    rx.table.column_header_cell("Key"),
                    rx.table.column_header_cell("Created (UTC)"),
                    rx.table.column_header_cell("Last used (UTC)"),
                    rx.table.column_header_cell(""),
                )
            ),
            rx.table.body(rx.foreach(ApiKeysState.keys, _row)),
            aria_label="API keys",
            width="100%",
        ),
        rx.text("No API keys yet.", size="2"),
    )
    return frame(
        rx.box(
            rx.vstack(
                rx.heading("API keys", size="6", as_="h1"),
                rx.text(
                    "Keys let scripts use the GraphQL API as you (never with admin rights): send "
                    "`Authorization: Bearer chk_…` over HTTP or in the WebSocket connection_init.",
                    size="2",
                ),
                openai_base_url(),
                rx.cond(
                    ApiKeysState.keys_error != "",
                    rx.callout(
                        ApiKeysState.keys_error, icon="triangle_alert", color_scheme="red", role="alert"
                    ),
                ),
                rx.card(create, width="100%"),
                secret,
                table,
                spacing="4",
                max_width="48em",
                margin_x="auto",
            ),
            padding="1em",
            width="100%",
        )
    )
