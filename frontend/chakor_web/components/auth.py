"""Login and registration pages."""

from __future__ import annotations

import reflex as rx
from reflex_components_core.el.elements.base import BaseHTML

from chakor_web.components.layout import frame, labeled_input, notice
from chakor_web.server import LOGIN_PATH, REGISTER_PATH
from chakor_web.state.auth import AuthState


class PlainForm(BaseHTML):
    """A <form> the browser submits itself (Reflex's own form always prevents that)."""

    tag = "form"
    action: rx.Var[str]
    method: rx.Var[str]


def _card(title: str, form: rx.Component, footer: rx.Component) -> rx.Component:
    return frame(
        rx.center(
            rx.card(
                rx.vstack(
                    rx.heading(title, size="6", as_="h1"),
                    notice(),
                    rx.cond(
                        AuthState.form_error != "",
                        rx.callout(
                            AuthState.form_error, icon="triangle_alert", color_scheme="red", role="alert"
                        ),
                    ),
                    form,
                    footer,
                    spacing="4",
                    width="100%",
                ),
                width="min(26em, 94vw)",
            ),
            width="100%",
            padding="1em",
        )
    )


def login_page() -> rx.Component:
    """A plain HTML form POST: the answer sets the HttpOnly session cookie (`chakor_web.server`)."""
    form = PlainForm.create(
        rx.vstack(
            labeled_input("Email", "email", type="email", auto_complete="username", required=True),
            labeled_input(
                "Password", "password", type="password", auto_complete="current-password", required=True
            ),
            rx.button("Log in", type="submit", width="100%"),
            spacing="3",
        ),
        action=LOGIN_PATH,
        method="post",
    )
    footer = rx.text("No account yet? ", rx.link("Register", href="/register"), size="2")
    return _card("Log in", form, footer)


def register_page() -> rx.Component:
    """A plain HTML form POST, like login: an account approved at once is signed in by the answer."""
    form = PlainForm.create(
        rx.vstack(
            labeled_input("Email", "email", type="email", auto_complete="username", required=True),
            labeled_input("Display name (optional)", "display_name", auto_complete="nickname"),
            labeled_input(
                "Password", "password", type="password", auto_complete="new-password", required=True
            ),
            labeled_input(
                "Repeat password", "confirm", type="password", auto_complete="new-password", required=True
            ),
            rx.button("Create account", type="submit", width="100%"),
            spacing="3",
        ),
        action=REGISTER_PATH,
        method="post",
    )
    footer = rx.text("Already registered? ", rx.link("Log in", href="/login"), size="2")
    return _card("Create an account", form, footer)
