"""The page frame shared by every page: top bar, navigation, notices."""

from __future__ import annotations

import reflex as rx

from chakor_web.state.auth import AuthState


def labeled_input(label: str, name: str, **props: object) -> rx.Component:
    """A form field with a visible <label> bound to it."""
    return rx.vstack(
        rx.el.label(label, html_for=name, class_name="field-label"),
        rx.input(id=name, name=name, width="100%", **props),
        spacing="1",
        width="100%",
    )


def notice() -> rx.Component:
    """A one-line message left by the last redirect (logged out, session expired, ...)."""
    return rx.cond(
        AuthState.notice != "",
        rx.callout(AuthState.notice, icon="info", role="status", id="notice", width="100%"),
    )


def navbar() -> rx.Component:
    return rx.el.nav(
        rx.hstack(
            rx.link(rx.heading("Chakor", size="5"), href="/", underline="none"),
            rx.spacer(),
            rx.cond(
                AuthState.logged_in,
                rx.hstack(
                    rx.link("Chat", href="/"),
                    rx.link("Documents", href="/documents"),
                    rx.cond(AuthState.is_admin, rx.link("Admin", href="/admin")),
                    rx.link("Settings", href="/settings"),
                    rx.link("API keys", href="/keys"),
                    rx.text(AuthState.user_label, color_scheme="gray", display=["none", "none", "block"]),
                    rx.button("Log out", on_click=AuthState.logout, variant="soft", size="1"),
                    align="center",
                    spacing="3",
                    wrap="wrap",  # at phone width the links take two lines instead of widening the page
                    justify="end",
                    min_width="0",
                ),
            ),
            rx.color_mode.button(aria_label="Toggle light/dark theme", size="1"),
            align="center",
            padding_x="1em",
            padding_y="0.6em",
            width="100%",
        ),
        aria_label="Main",
        border_bottom="1px solid var(--gray-a5)",
        width="100%",
    )


def frame(*children: rx.Component) -> rx.Component:
    """A full page: the top bar, then the page's content filling the rest of the screen."""
    return rx.flex(
        navbar(),
        rx.el.main(*children, flex="1", min_height="0", width="100%", display="flex"),
        direction="column",
        height="100dvh",
        width="100%",
    )
