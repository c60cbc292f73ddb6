"""Pieces of the chat page for versions and conversation tools: `< 2/3 >` switchers, copy buttons,
the settings panel, export and import, and auto-scroll while an answer streams."""

from __future__ import annotations

import reflex as rx

from chakor_web.state.chat import ChatMessage, ChatState
from chakor_web.state.conversation_tools import UPLOAD_ID, ConversationToolsState


def version_switcher(message: ChatMessage) -> rx.Component:
    """`< 2/3 >` for a message with several versions (edits, regenerated answers)."""
    count = message.version_count
    return rx.cond(
        count > 1,
        rx.hstack(
            rx.icon_button(
                rx.icon("chevron_left", size=14),
                on_click=ChatState.switch_version(message.id, -1),
                disabled=(message.version <= 1) | ChatState.streaming,
                aria_label="Previous version",
                variant="ghost",
                size="1",
            ),
            rx.text(
                message.version.to_string() + "/" + count.to_string(), size="1", class_name="version-label"
            ),
            rx.icon_button(
                rx.icon("chevron_right", size=14),
                on_click=ChatState.switch_version(message.id, 1),
                disabled=(message.version >= count) | ChatState.streaming,
                aria_label="Next version",
                variant="ghost",
                size="1",
            ),
            align="center",
            spacing="1",
            class_name="version-switcher",
        ),
    )


def copy_button(message: ChatMessage) -> rx.Component:
    """Copies the whole message (its Markdown source)."""
    return rx.icon_button(
        rx.icon("copy", size=14),
        on_click=[rx.set_clipboard(message.content), rx.toast("Copied", duration=1500)],
        aria_label="Copy text",  # not "message": the composer is labelled "Message"
        variant="ghost",
        size="1",
    )


def _field(label: str, name: str, control: rx.Component) -> rx.Component:
    return rx.vstack(
        rx.el.label(label, html_for=name, class_name="field-label"), control, spacing="1", width="100%"
    )


def settings_dialog() -> rx.Component:
    """System prompt, temperature and answer length of the open (or the next) conversation."""
    state = ConversationToolsState
    form = rx.form(
        rx.vstack(
            _field(
                "System prompt",
                "system_prompt",
                rx.text_area(
                    id="system_prompt",
                    name="system_prompt",
                    default_value=state.system_prompt,
                    placeholder="Empty: the server's default",
                    rows="4",
                    width="100%",
                ),
            ),
            _field(
                "Temperature (empty: the model's default)",
                "temperature",
                rx.input(id="temperature", name="temperature", default_value=state.temperature, width="100%"),
            ),
            _field(
                "Max tokens per answer",
                "max_tokens",
                rx.input(
                    id="max_tokens",
                    name="max_tokens",
                    default_value=state.max_tokens,
                    placeholder="Empty: the server's default",
                    width="100%",
                ),
            ),
            rx.cond(
                state.settings_error != "",
                rx.callout(state.settings_error, icon="triangle_alert", color_scheme="red", role="alert"),
            ),
            rx.cond(state.settings_note != "", rx.text(state.settings_note, size="2", role="status")),
            rx.hstack(
                rx.dialog.close(rx.button("Close", type="button", variant="soft")),
                rx.button("Save settings", type="submit"),
                justify="end",
                width="100%",
            ),
            spacing="3",
        ),
        on_submit=state.save_settings,
        key=state.conversation_id + state.max_tokens,  # fresh defaults when the values are loaded
    )
    return rx.dialog.root(
        rx.dialog.trigger(
            rx.icon_button(
                rx.icon("sliders_horizontal", size=16),
                on_click=state.open_settings,
                aria_label="Conversation settings",
                variant="soft",
                size="2",
            )
        ),
        rx.dialog.content(rx.dialog.title("Conversation settings"), form),
        open=state.settings_open,
        on_open_change=state.set_open,
    )


def export_import() -> rx.Component:
    """Export the open conversation (JSON or Markdown) and import a JSON export."""
    state = ConversationToolsState
    upload = rx.upload.root(
        rx.button(rx.icon("upload", size=14), "Import", variant="soft", size="2", type="button"),
        id=UPLOAD_ID,
        accept={"application/json": [".json"]},
        max_files=1,
        multiple=False,
        no_drag=True,
        on_drop=state.import_files(rx.upload_files(upload_id=UPLOAD_ID)),
        border="none",
        padding="0",
    )
    return rx.hstack(
        rx.cond(
            ChatState.conversation_id != "",
            rx.menu.root(
                rx.menu.trigger(rx.button(rx.icon("download", size=14), "Export", variant="soft", size="2")),
                rx.menu.content(
                    rx.menu.item("JSON (every version)", on_click=state.export("JSON")),
                    rx.menu.item("Markdown (this branch)", on_click=state.export("MARKDOWN")),
                ),
            ),
        ),
        upload,
        spacing="2",
        align="center",
    )


def header_tools() -> rx.Component:
    return rx.hstack(export_import(), settings_dialog(), spacing="2", align="center")


def autoscroll() -> rx.Component:
    """Keeps the message list scrolled to the bottom as an answer streams, unless the reader scrolled up."""
    return rx.script(src="/autoscroll.js")
