"""The chat page: conversation sidebar, messages (Markdown, sources, speed) and the composer."""

from __future__ import annotations

import reflex as rx

from chakor_web.components.conversation_tools import autoscroll, copy_button, header_tools, version_switcher
from chakor_web.components.layout import frame
from chakor_web.components.model_picker import answer_model, model_picker
from chakor_web.state.chat import ChatMessage, ChatState, ConversationItem, Source


def _code_block(value: rx.Var[str], **props: object) -> rx.Component:
    copy = rx.icon_button(
        rx.icon("copy", size=14),
        on_click=rx.set_clipboard(value),
        aria_label="Copy code",
        variant="soft",
        size="1",
        position="absolute",
        top="0.5em",
        right="0.5em",
    )
    return rx.code_block(
        value, can_copy=True, copy_button=copy, wrap_long_lines=True, margin_y="0.6em", **props
    )


def markdown(text: str) -> rx.Component:
    """Markdown with syntax-highlighted code blocks that have a copy button.

    No raw HTML (no rehype-raw): tags in the text show as text; react-markdown blanks `javascript:`
    and other unsafe link targets.
    """
    return rx.markdown(text, component_map={"pre": _code_block}, class_name="answer", use_raw=False)


# Sidebar


def _rename_form(item: ConversationItem) -> rx.Component:
    return rx.form(
        rx.hstack(
            rx.input(
                value=ChatState.rename_title,
                on_change=ChatState.set_rename_title,
                aria_label="New title",
                auto_focus=True,
                size="1",
                flex="1",
            ),
            rx.button("Save", type="submit", size="1"),
            rx.button("Cancel", type="button", size="1", variant="soft", on_click=ChatState.cancel_rename),
            width="100%",
        ),
        on_submit=lambda _: ChatState.save_rename(),
        width="100%",
    )


def _conversation_row(item: ConversationItem) -> rx.Component:
    selected = item.id == ChatState.conversation_id
    return rx.el.li(
        rx.cond(
            ChatState.rename_id == item.id,
            _rename_form(item),
            rx.hstack(
                rx.link(
                    item.title,
                    href="/c/" + item.id,
                    flex="1",
                    truncate=True,
                    weight=rx.cond(selected, "bold", "regular"),
                    class_name="conversation-link",
                ),
                rx.icon_button(
                    rx.icon("pencil", size=14),
                    on_click=ChatState.start_rename(item.id, item.title),
                    aria_label="Rename " + item.title,
                    variant="ghost",
                    size="1",
                ),
                rx.icon_button(
                    rx.icon("trash_2", size=14),
                    on_click=ChatState.ask_delete(item.id),
                    aria_label="Delete " + item.title,
                    variant="ghost",
                    color_scheme="red",
                    size="1",
                ),
                align="center",
                width="100%",
            ),
        ),
        list_style="none",
        padding_y="0.3em",
    )


def _delete_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete this conversation?"),
            rx.alert_dialog.description("Its messages are deleted too. This cannot be undone."),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", on_click=ChatState.cancel_delete)),
                rx.alert_dialog.action(
                    rx.button("Delete", color_scheme="red", on_click=ChatState.confirm_delete)
                ),
                justify="end",
                margin_top="1em",
            ),
        ),
        open=ChatState.delete_id != "",
    )


def sidebar() -> rx.Component:
    return rx.el.aside(
        rx.vstack(
            rx.link(rx.button(rx.icon("plus", size=16), "New chat", width="100%"), href="/", width="100%"),
            rx.el.label("Search conversations", html_for="conversation-search", class_name="visually-hidden"),
            rx.input(
                id="conversation-search",
                placeholder="Search conversations",
                value=ChatState.search,
                on_change=ChatState.set_search.debounce(300),
                type="search",
                width="100%",
            ),
            rx.el.ul(
                rx.foreach(ChatState.conversations, _conversation_row),
                id="conversation-list",
                aria_label="Conversations",
                width="100%",
                padding="0",
                margin="0",
            ),
            rx.cond(
                ChatState.conversations.length() == 0,
                rx.text(rx.cond(ChatState.search != "", "No matches.", "No conversations yet."), size="2"),
            ),
            rx.cond(
                ChatState.next_cursor != "",
                rx.button("Load more", on_click=ChatState.load_more, variant="soft", size="1", width="100%"),
            ),
            _delete_dialog(),
            spacing="3",
            width="100%",
        ),
        width=["100%", "100%", "18em"],
        max_height=["30vh", "30vh", "none"],
        overflow_y="auto",
        padding="1em",
        border_right="1px solid var(--gray-a5)",
        flex_shrink="0",
    )


# Messages


def _source_card(source: Source) -> rx.Component:
    card = rx.card(
        rx.text(source.title, weight="medium", size="2", truncate=True),
        rx.text(
            rx.cond(source.collection != "", source.collection + " · " + source.domain, source.domain),
            size="1",
            color_scheme="gray",
            truncate=True,
        ),
        width="14em",
    )
    return rx.cond(
        source.link,
        rx.link(card, href=source.url, is_external=True, underline="none", class_name="source-card"),
        rx.box(card, class_name="source-card", title=source.url),
    )


def _sources(sources: list[Source]) -> rx.Component:
    return rx.cond(
        sources,  # a non-empty list
        rx.flex(rx.foreach(sources, _source_card), wrap="wrap", gap="2", aria_label="Sources"),
    )


def _user_message(message: ChatMessage) -> rx.Component:
    editing = ChatState.edit_id == message.id
    return rx.cond(
        editing & (message.id != ""),
        rx.form(
            rx.vstack(
                rx.text_area(
                    value=ChatState.edit_text,
                    on_change=ChatState.set_edit_text,
                    aria_label="Edit message",
                    width="100%",
                ),
                rx.hstack(
                    rx.button("Send edited", type="submit", size="1"),
                    rx.button(
                        "Cancel", type="button", variant="soft", size="1", on_click=ChatState.cancel_edit
                    ),
                ),
                width="100%",
            ),
            on_submit=lambda _: ChatState.resend_edit(),
            width="100%",
        ),
        rx.vstack(
            rx.box(
                rx.text(message.content, white_space="pre-wrap"),
                class_name="bubble user",
                custom_attrs={"data-message-id": message.id},
            ),
            rx.hstack(
                version_switcher(message),
                copy_button(message),
                rx.cond(
                    ~ChatState.streaming & (message.id != ""),
                    rx.button(
                        "Edit",
                        on_click=ChatState.start_edit(message.id, message.content),
                        variant="ghost",
                        size="1",
                        aria_label="Edit this message",
                    ),
                ),
                align="center",
            ),
            align="end",
            width="100%",
        ),
    )


def _assistant_message(message: ChatMessage, is_last: rx.Var[bool]) -> rx.Component:
    return rx.vstack(
        rx.box(
            markdown(message.content),
            class_name="bubble assistant",
            data_status=message.status,
            custom_attrs={"data-message-id": message.id},
        ),
        _sources(message.sources),
        rx.hstack(
            version_switcher(message),
            copy_button(message),
            answer_model(message.model),
            rx.cond(message.speed != "", rx.badge(message.speed, variant="soft")),
            rx.cond(message.note != "", rx.text(message.note, size="1", color_scheme="gray")),
            rx.cond(
                is_last & ChatState.can_regenerate,
                rx.button(
                    rx.icon("refresh_cw", size=14), "Regenerate", on_click=ChatState.regenerate, size="1"
                ),
            ),
            align="center",
        ),
        align="start",
        width="100%",
    )


def _message(message: ChatMessage, index: rx.Var[int]) -> rx.Component:
    is_last = index == ChatState.messages.length() - 1
    return rx.cond(message.role == "user", _user_message(message), _assistant_message(message, is_last))


def _live_answer() -> rx.Component:
    return rx.cond(
        ChatState.streaming,
        rx.vstack(
            rx.box(
                markdown(ChatState.live_text),
                class_name="bubble assistant",
                data_status="streaming",
                id="live",
            ),
            _sources(ChatState.live_sources),
            rx.hstack(rx.spinner(size="1"), rx.text("Generating…", size="1"), role="status"),
            align="start",
            width="100%",
        ),
    )


def _error() -> rx.Component:
    return rx.cond(
        ChatState.error != "",
        rx.callout(
            rx.hstack(
                rx.text(ChatState.error),
                rx.cond(
                    ChatState.failed_turn,
                    rx.button(
                        "Retry", on_click=ChatState.retry, size="1", color_scheme="red", variant="soft"
                    ),
                ),
                align="center",
            ),
            icon="triangle_alert",
            color_scheme="red",
            role="alert",
            id="chat-error",
        ),
    )


def _collection_picker() -> rx.Component:
    """Which collection Documents search covers: all of yours and the site's, or one of them."""
    return rx.select.root(
        rx.select.trigger(aria_label="Collection"),
        rx.select.content(
            rx.foreach(ChatState.collection_choices, lambda name: rx.select.item(name, value=name))
        ),
        value=ChatState.search_collection,
        on_change=ChatState.set_search_collection,
        size="1",
    )


def _composer() -> rx.Component:
    """The message box; the web-search switch sits outside the form so that resetting the form keeps it."""
    send_or_stop = rx.cond(
        ChatState.streaming,
        rx.button(
            rx.icon("square", size=14), "Stop", type="button", on_click=ChatState.stop, color_scheme="red"
        ),
        rx.button(rx.icon("send", size=14), "Send", type="submit", custom_attrs={"form": "composer-form"}),
    )
    return rx.vstack(
        rx.form(
            rx.el.label("Message", html_for="composer", class_name="visually-hidden"),
            rx.text_area(
                id="composer",
                name="content",
                placeholder="Message Chakor (Enter sends, Shift+Enter adds a line)",
                enter_key_submit=True,
                auto_focus=True,
                rows="3",
                width="100%",
            ),
            id="composer-form",
            on_submit=ChatState.send,
            reset_on_submit=True,
            width="100%",
        ),
        rx.hstack(
            rx.hstack(
                rx.text("Search", size="2", id="search-mode-label"),
                rx.radio(
                    ChatState.search_labels,
                    value=ChatState.search_label,
                    on_change=ChatState.set_search_label,
                    direction="row",
                    size="1",
                    aria_labelledby="search-mode-label",
                ),
                rx.cond(ChatState.search_mode == "DOCUMENTS", _collection_picker()),
                align="center",
            ),
            rx.spacer(),
            send_or_stop,
            width="100%",
            align="center",
        ),
        width="100%",
        padding="1em",
        border_top="1px solid var(--gray-a5)",
    )


def conversation_pane() -> rx.Component:
    return rx.flex(
        rx.box(
            rx.vstack(
                rx.hstack(
                    rx.heading(
                        rx.cond(ChatState.title != "", ChatState.title, "New chat"),
                        size="4",
                        as_="h1",
                        flex="1",
                    ),
                    model_picker(),
                    header_tools(),
                    align="center",
                    width="100%",
                ),
                rx.foreach(ChatState.messages, _message),
                _live_answer(),
                _error(),
                spacing="4",
                width="100%",
                max_width="52em",
                margin_x="auto",
                id="messages",
            ),
            flex="1",
            overflow_y="auto",
            padding="1em",
            id="message-scroller",
        ),
        _composer(),
        autoscroll(),
        direction="column",
        flex="1",
        min_width="0",
        min_height="0",
    )


def chat_page() -> rx.Component:
    return frame(
        rx.flex(
            sidebar(),
            conversation_pane(),
            direction=rx.breakpoints(initial="column", md="row"),
            width="100%",
            min_height="0",
        )
    )
