"""The settings page: change password, light/dark theme."""

from __future__ import annotations

import reflex as rx
from reflex_base.style import set_color_mode

from chakor_web.components.layout import frame, labeled_input
from chakor_web.state.settings import SettingsState


def settings_page() -> rx.Component:
    password = rx.form(
        rx.vstack(
            rx.heading("Change password", size="4", as_="h2"),
            rx.cond(
                SettingsState.password_error != "",
                rx.callout(
                    SettingsState.password_error, icon="triangle_alert", color_scheme="red", role="alert"
                ),
            ),
            labeled_input(
                "Current password", "old_password", type="password", auto_complete="current-password"
            ),
            labeled_input("New password", "new_password", type="password", auto_complete="new-password"),
            labeled_input("Repeat new password", "confirm", type="password", auto_complete="new-password"),
            rx.button("Change password", type="submit"),
            spacing="3",
        ),
        on_submit=SettingsState.change_password,
        reset_on_submit=True,
    )
    theme = rx.vstack(
        rx.heading("Theme", size="4", as_="h2"),
        rx.segmented_control.root(
            rx.segmented_control.item("Light", value="light"),
            rx.segmented_control.item("Dark", value="dark"),
            rx.segmented_control.item("System", value="system"),
            value=rx.color_mode,
            on_change=lambda mode: set_color_mode(mode),
            aria_label="Theme",
        ),
        spacing="3",
    )
    return frame(
        rx.box(
            rx.vstack(
                rx.heading("Settings", size="6", as_="h1"),
                rx.card(password, width="100%"),
                rx.card(theme, width="100%"),
                spacing="4",
                max_width="32em",
                margin_x="auto",
            ),
            padding="1em",
            width="100%",
        )
    )
