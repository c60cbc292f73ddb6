"""The admin dashboard: model card, live server status with charts, user management."""

from __future__ import annotations

import reflex as rx

from chakor_web.components.api_keys import openai_base_url
from chakor_web.components.layout import frame
from chakor_web.state.admin import AdminState, BenchmarkRow, Fact, LlamaRow, ModelRow, Plot, QuantRow, UserRow


def _fact(fact: Fact) -> rx.Component:
    return rx.data_list.item(
        rx.data_list.label(fact.label), rx.data_list.value(rx.text(fact.value, size="2"))
    )


def _facts(title: str, facts: list[Fact]) -> rx.Component:
    return rx.vstack(
        rx.heading(title, size="3", as_="h3"),
        rx.cond(
            facts,  # a non-empty list
            rx.data_list.root(rx.foreach(facts, _fact), size="1"),
            rx.text("none recorded", size="2", color_scheme="gray"),
        ),
        width="100%",
    )


def _quant_row(row: QuantRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row.quant),
        rx.table.cell(row.size),
        rx.table.cell(row.kld),
        rx.table.cell(row.p99),
        rx.table.cell(row.same_top),
        rx.table.cell(row.gate),
        rx.table.cell(rx.badge(row.verdict, color_scheme=rx.cond(row.passed, "green", "red"))),
        rx.table.cell(row.speed),
    )


def _benchmark_row(row: BenchmarkRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row.task),
        rx.table.cell(row.n_items),
        rx.table.cell(row.accuracy),
        rx.table.cell(row.accuracy_norm),
        rx.table.cell(row.chance),
        rx.table.cell(row.centered),
        rx.table.cell(rx.text(row.ggufs, color_scheme=rx.cond(row.flagged, "red", "gray"))),
    )


def _plot(plot: Plot) -> rx.Component:
    return rx.image(src=plot.src, alt=plot.name, width="100%", max_width="36em")


BENCHMARK_HEADERS = ("Task", "Items", "Acc", "Acc norm", "Chance", "Centred", "GGUF acc / same choice")


def evaluation() -> rx.Component:
    """`chakor eval`'s model card: headline numbers, the KL-divergence and benchmark tables, the plots."""
    headers = ("Quant", "Size", "Mean KLD", "99% KLD", "Same top", "Gate", "Verdict", "Gen tok/s")
    return rx.vstack(
        rx.heading("Evaluation", size="3", as_="h3"),
        rx.cond(
            AdminState.eval_facts,
            rx.vstack(
                rx.data_list.root(rx.foreach(AdminState.eval_facts, _fact), size="1"),
                rx.box(
                    rx.table.root(
                        rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in headers])),
                        rx.table.body(rx.foreach(AdminState.quant_rows, _quant_row)),
                        size="1",
                        id="quant-table",
                    ),
                    width="100%",
                    overflow_x="auto",
                ),
                rx.cond(
                    AdminState.benchmark_rows,
                    rx.table.root(
                        rx.table.header(
                            rx.table.row(*[rx.table.column_header_cell(h) for h in BENCHMARK_HEADERS])
                        ),
                        rx.table.body(rx.foreach(AdminState.benchmark_rows, _benchmark_row)),
                        size="1",
                        id="benchmark-table",
                    ),
                ),
                rx.cond(
                    AdminState.k_quants_note != "",
                    rx.text("K-quants: ", AdminState.k_quants_note, size="1", color_scheme="gray"),
                ),
                rx.foreach(AdminState.plots, _plot),
                width="100%",
            ),
            rx.text("no eval report (run `chakor eval`)", size="2", color_scheme="gray"),
        ),
        width="100%",
        id="model-evaluation",
    )


def model_card() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Model", size="4", as_="h2"),
            rx.data_list.root(rx.foreach(AdminState.model_facts, _fact)),
            evaluation(),
            _facts("Lineage", AdminState.lineage),
            _facts("Verification", AdminState.verification),
            width="100%",
        ),
        id="model-card",
        width="100%",
    )


MODEL_HEADERS = ("Model", "Kind", "Health", "Parameters", "Quantization", "Context", "Evaluation")


def _model_row(row: ModelRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text.strong(row.id), rx.text(row.description, size="1", color_scheme="gray")),
        rx.table.cell(row.kind),
        rx.table.cell(rx.badge(rx.cond(row.up, "up", "down"), color_scheme=rx.cond(row.up, "green", "red"))),
        rx.table.cell(row.parameters),
        rx.table.cell(row.quantization),
        rx.table.cell(row.context),
        rx.table.cell(row.evaluation),
    )


def served_models() -> rx.Component:
    """Every served model's card in brief (`chakor models`); the full card below is the default model's."""
    return rx.card(
        rx.vstack(
            rx.heading("Served models", size="4", as_="h2"),
            rx.table.root(
                rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in MODEL_HEADERS])),
                rx.table.body(rx.foreach(AdminState.served_models, _model_row)),
                width="100%",
                size="1",
            ),
            width="100%",
        ),
        id="served-models",
        width="100%",
    )


def _llama_row(row: LlamaRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row.model),
        rx.table.cell(row.url),
        rx.table.cell(rx.badge(row.status, color_scheme=rx.cond(row.healthy, "green", "red"))),
        rx.table.cell(row.slots),
        rx.table.cell(row.speed),
    )


def _chart(title: str, key: str, color: str, unit: str) -> rx.Component:
    return rx.vstack(
        rx.text(title, size="2", weight="medium"),
        rx.recharts.line_chart(
            rx.recharts.line(data_key=key, stroke=color, dot=False, is_animation_active=False, unit=unit),
            rx.recharts.x_axis(data_key="time", hide=True),
            rx.recharts.y_axis(width=40),
            rx.recharts.graphing_tooltip(),
            data=AdminState.chart,
            height=160,
            width="100%",
        ),
        width="100%",
        min_width="16em",
        flex="1",
    )


def server_status() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading("Server", size="4", as_="h2"),
                rx.cond(AdminState.watching, rx.badge("live", color_scheme="green"), rx.badge("paused")),
                rx.text(AdminState.chart.length(), " samples", size="1", color_scheme="gray", id="samples"),
                align="center",
            ),
            rx.hstack(
                rx.text("Backend CPU: ", rx.text.strong(AdminState.cpu)),
                rx.text("Memory: ", rx.text.strong(AdminState.memory)),
                rx.text("Active streams: ", rx.text.strong(AdminState.streams)),
                rx.text("Database: ", rx.text.strong(rx.cond(AdminState.database_ok, "ok", "down"))),
                spacing="4",
                wrap="wrap",
                id="server-stats",
            ),
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        rx.table.column_header_cell("Model"),
                        rx.table.column_header_cell("llama-server"),
                        rx.table.column_header_cell("Health"),
                        rx.table.column_header_cell("Slots"),
                        rx.table.column_header_cell("Tokens/s"),
                    )
                ),
                rx.table.body(rx.foreach(AdminState.llama, _llama_row)),
                width="100%",
                size="1",
                id="llama-servers",
            ),
            rx.flex(
                _chart("Tokens/s", "tokens", "var(--accent-9)", ""),
                _chart("CPU %", "cpu", "var(--orange-9)", "%"),
                _chart("Memory (MB)", "memory", "var(--blue-9)", " MB"),
                gap="4",
                wrap="wrap",
                width="100%",
            ),
            width="100%",
        ),
        width="100%",
    )


def _user_row(user: UserRow) -> rx.Component:
    is_admin = user.role == "admin"
    return rx.table.row(
        rx.table.cell(user.email),
        rx.table.cell(user.name),
        rx.table.cell(rx.badge(user.role, color_scheme=rx.cond(is_admin, "purple", "gray"))),
        rx.table.cell(rx.cond(user.disabled, rx.badge("disabled", color_scheme="red"), rx.badge("active"))),
        rx.table.cell(user.created),
        rx.table.cell(
            rx.hstack(
                rx.button(
                    rx.cond(is_admin, "Demote", "Promote"),
                    on_click=AdminState.set_role(user.id, rx.cond(is_admin, "user", "admin")),
                    size="1",
                    variant="soft",
                    aria_label=rx.cond(is_admin, "Demote ", "Promote ") + user.email,
                ),
                rx.button(
                    rx.cond(user.disabled, "Enable", "Disable"),
                    on_click=AdminState.set_disabled(user.id, ~user.disabled),
                    size="1",
                    variant="soft",
                    aria_label=rx.cond(user.disabled, "Enable ", "Disable ") + user.email,
                ),
                rx.button(
                    "Delete",
                    on_click=AdminState.ask_delete_user(user.id, user.email),
                    size="1",
                    variant="soft",
                    color_scheme="red",
                    aria_label="Delete " + user.email,
                ),
            )
        ),
    )


def _delete_user_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete user?"),
            rx.alert_dialog.description(
                "Delete ",
                AdminState.delete_user_email,
                " and all of their conversations? This cannot be undone.",
            ),
            rx.hstack(
                rx.alert_dialog.cancel(
                    rx.button("Cancel", variant="soft", on_click=AdminState.cancel_delete_user)
                ),
                rx.alert_dialog.action(
                    rx.button("Delete user", color_scheme="red", on_click=AdminState.confirm_delete_user)
                ),
                justify="end",
                margin_top="1em",
            ),
        ),
        open=AdminState.delete_user_id != "",
    )


def users_table() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Users", size="4", as_="h2"),
            rx.el.label("Search users", html_for="user-search", class_name="visually-hidden"),
            rx.input(
                id="user-search",
                placeholder="Search users",
                value=AdminState.user_search,
                on_change=AdminState.set_user_search.debounce(300),
                type="search",
            ),
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            *[
                                rx.table.column_header_cell(h)
                                for h in ("Email", "Name", "Role", "State", "Joined", "")
                            ]
                        )
                    ),
                    rx.table.body(rx.foreach(AdminState.users, _user_row)),
                    width="100%",
                    size="1",
                    id="users-table",
                ),
                width="100%",
                overflow_x="auto",
            ),
            rx.hstack(
                rx.button(
                    "Previous page",
                    on_click=AdminState.previous_users,
                    disabled=AdminState.users_before.length() == 0,
                    variant="soft",
                    size="1",
                ),
                rx.button(
                    "Next page",
                    on_click=AdminState.next_users,
                    disabled=AdminState.users_next == "",
                    variant="soft",
                    size="1",
                ),
                justify="end",
                width="100%",
            ),
            _delete_user_dialog(),
            width="100%",
        ),
        width="100%",
    )


def usage_chart() -> rx.Component:
    """Tokens in and out per day, all users together (the API has them per user: usageByUser)."""
    return rx.card(
        rx.vstack(
            rx.heading("Usage (last 14 days, UTC)", size="4", as_="h2"),
            rx.cond(
                AdminState.usage.length() > 0,
                rx.recharts.bar_chart(
                    rx.recharts.bar(
                        data_key="tokens_in", name="tokens in", fill="var(--blue-9)", stack_id="t"
                    ),
                    rx.recharts.bar(
                        data_key="tokens_out", name="tokens out", fill="var(--accent-9)", stack_id="t"
                    ),
                    rx.recharts.x_axis(data_key="day"),
                    rx.recharts.y_axis(width=60),
                    rx.recharts.graphing_tooltip(),
                    rx.recharts.legend(),
                    data=AdminState.usage,
                    height=200,
                    width="100%",
                ),
                rx.text("No answers in this period.", size="2"),
            ),
            width="100%",
            id="usage-chart",
        ),
        width="100%",
    )


def admin_page() -> rx.Component:
    return frame(
        rx.box(
            rx.vstack(
                rx.heading("Admin dashboard", size="6", as_="h1"),
                openai_base_url(),
                rx.cond(
                    AdminState.admin_error != "",
                    rx.callout(
                        AdminState.admin_error, icon="triangle_alert", color_scheme="red", role="alert"
                    ),
                ),
                served_models(),
                rx.grid(
                    model_card(),
                    server_status(),
                    columns=rx.breakpoints(initial="1", md="2"),
                    gap="4",
                    width="100%",
                ),
                usage_chart(),
                users_table(),
                spacing="4",
                max_width="80em",
                margin_x="auto",
            ),
            on_unmount=AdminState.stop_watching,
            padding="1em",
            width="100%",
            overflow_y="auto",
        )
    )
