"""The chat header's model picker: which served model answers the open conversation (or the next new one)."""

from __future__ import annotations

import reflex as rx

from chakor_web.state.chat import ChatState, ModelChoice


def _item(choice: ModelChoice) -> rx.Component:
    return rx.select.item(choice.label, value=choice.id, title=choice.description)


def model_picker() -> rx.Component:
    """A select of the served models (name, kind, size) and the picked one's card; hidden while the server
    serves only one."""
    return rx.cond(
        ChatState.model_choices.length() > 1,
        rx.hstack(
            rx.select.root(
                rx.select.trigger(aria_label="Model", id="model-picker"),
                rx.select.content(rx.foreach(ChatState.model_choices, _item)),
                value=ChatState.model,
                on_change=ChatState.pick_model,
                disabled=ChatState.streaming,
                size="1",
            ),
            rx.popover.root(
                rx.popover.trigger(
                    rx.icon_button(
                        rx.icon("info", size=14), aria_label="Model card", variant="ghost", size="1"
                    )
                ),
                rx.popover.content(
                    rx.text(ChatState.model_card, size="2"), id="model-card-popover", max_width="28em"
                ),
            ),
            align="center",
            spacing="1",
        ),
    )


def answer_model(model: str | rx.Var[str]) -> rx.Component:
    """The name of the model that wrote an answer, beside its other details."""
    return rx.cond(model != "", rx.badge(model, variant="outline", class_name="answer-model"))
