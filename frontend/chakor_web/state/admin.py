"""Admin dashboard state: model card, live server status and user management (admins only)."""

from __future__ import annotations

import json
import time
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import reflex as rx
from reflex.event import EventSpec

from chakor_web.api import ApiError, subscribe
from chakor_web.state.auth import USER_FIELDS, AuthState

HISTORY_POINTS = 60
WATCH_SECONDS = 15 * 60  # a dashboard left open stops polling after this; reloading restarts it

MODEL = """query { model {
  name architecture quantization contextLength servedContext parameters fileSizeBytes lineage verifyReport
  evaluation {
    passed bitsPerByte valLoss qaF1 qaF1Documents qaQuestions recommendedQuant servedQuant servedPassed
    scoredTokens kQuantsSkipped evaluatedAt
    quants { quant sizeBytes meanKld p99Kld sameTop pplRatio maxMeanKld verdict generationTokensPerSecond }
    plots { name dataUri }
    core benchmarks { task items accuracy accuracyNorm chance centered ggufs { quant accuracy agreement flagged } }
  }
} }"""
# Every served model's card in brief (the default one's full card is MODEL's).
MODELS = """query { models {
  id kind up description parameters quantization contextLength evaluation { passed bitsPerByte qaF1 }
} }"""
USERS_PER_PAGE = 25
USERS = f"""query($search: String, $after: String) {{
  users(first: {USERS_PER_PAGE}, after: $after, search: $search) {{
    edges {{ node {{ {USER_FIELDS} createdAt }} }} pageInfo {{ hasNextPage endCursor }}
  }}
}}"""
USAGE_DAYS = 14
USAGE = f"query {{ usageByUser(days: {USAGE_DAYS}) {{ day tokensIn tokensOut answers }} }}"
SET_ROLE = f"mutation($id: ID!, $role: Role!) {{ setUserRole(userId: $id, role: $role) {{ {USER_FIELDS} }} }}"
SET_DISABLED = (
    f"mutation($id: ID!, $disabled: Boolean!) {{ setUserDisabled(userId: $id, disabled: $disabled) "
    f"{{ {USER_FIELDS} }} }}"
)
DELETE_USER = "mutation($id: ID!) { deleteUser(userId: $id) }"
STATUS = """subscription { serverStatus(intervalMs: 2000) {
  cpuPercent memoryRssMb systemMemoryPercent databaseOk activeStreams timestamp
  llamaServers { model url healthy status slotsTotal slotsIdle tokensPerSecond }
} }"""


@dataclass
class UserRow:
    """One row of the user table."""

    id: str = ""
    email: str = ""
    name: str = ""
    role: str = ""
    disabled: bool = False
    created: str = ""


@dataclass
class Fact:
    """A label and a value on the model card."""

    label: str = ""
    value: str = ""


@dataclass
class QuantRow:
    """One GGUF of the eval's quantization table."""

    quant: str = ""
    size: str = ""
    kld: str = ""
    p99: str = ""
    same_top: str = ""
    gate: str = ""
    verdict: str = ""
    passed: bool = False
    speed: str = ""


@dataclass
class Plot:
    """One of the eval's PNGs (a data: URI from the API)."""

    name: str = ""
    src: str = ""


@dataclass
class BenchmarkRow:
    """One benchmark task of the eval: PyTorch's accuracies, each GGUF's accuracy / agreement with PyTorch."""

    task: str = ""
    n_items: str = ""  # not `items`: a state var of this type has an `items` method
    accuracy: str = ""
    accuracy_norm: str = ""
    chance: str = ""
    centered: str = ""
    ggufs: str = ""
    flagged: bool = False


@dataclass
class ModelRow:
    """One served model's card in brief: name, kind, health, size, quantization, context, eval headline."""

    id: str = ""
    kind: str = ""
    up: bool = False
    parameters: str = ""
    quantization: str = ""
    context: str = ""
    evaluation: str = ""
    description: str = ""


def _eval_headline(card: dict[str, Any] | None) -> str:
    if not card:
        return "no eval report"
    verdict = "passed" if card["passed"] else "failed"
    return f"{verdict}, {_text(card['bitsPerByte'])} bits/byte, QA F1 {_text(card['qaF1'])}"


def _model_row(model: dict[str, Any]) -> ModelRow:
    return ModelRow(
        model["id"],
        model["kind"],
        model["up"],
        _count(model["parameters"]),
        _text(model["quantization"]),
        _text(model["contextLength"]),
        _eval_headline(model["evaluation"]),
        model["description"],
    )


@dataclass
class LlamaRow:
    """One llama-server in the live status."""

    model: str = ""
    url: str = ""
    status: str = ""
    healthy: bool = False
    slots: str = ""
    speed: str = ""


def _count(value: float | None) -> str:
    if value is None:
        return "unknown"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def _text(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "none"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _facts(model: dict[str, Any]) -> list[Fact]:
    return [
        Fact("Name", _text(model["name"])),
        Fact("Architecture", _text(model["architecture"])),
        Fact("Parameters", _count(model["parameters"])),
        Fact("Quantization", _text(model["quantization"])),
        Fact(
            "Context (trained / served)", f"{_text(model['contextLength'])} / {_text(model['servedContext'])}"
        ),
        Fact("File size", f"{_count(model['fileSizeBytes'])}B"),
    ]


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _eval_facts(card: dict[str, Any]) -> list[Fact]:
    """The model card's headline numbers, formatted as eval.md and the README show them."""
    served = card["servedQuant"] or "not in the report"
    if card["servedQuant"] and card["servedPassed"] is False:
        served += " (FAILED its gate)"
    return [
        Fact("Bits per byte (validation)", f"{card['bitsPerByte']:.4f}"),
        Fact("Validation loss", f"{card['valLoss']:.4f}"),
        Fact("Held-out QA F1 (no search)", _number(card["qaF1"], ".3f")),
        Fact("Held-out QA F1 (documents)", _number(card["qaF1Documents"], ".3f")),
        Fact("Served quant", served),
        Fact("Smallest passing quant", card["recommendedQuant"] or "none"),
        Fact("KLD scored tokens", f"{card['scoredTokens']:,}"),
        Fact("Gates", "all passed" if card["passed"] else "a gate FAILED"),
        Fact("Evaluated", card["evaluatedAt"] or "unknown"),
        *(
            [Fact(f"CORE ({len(card['benchmarks'])} tasks)", f"{card['core']:.4f}")]
            if card["benchmarks"]
            else []
        ),
    ]


def _benchmark_row(task: dict[str, Any]) -> BenchmarkRow:
    """A benchmark row as eval.md shows it."""
    ggufs = [
        f"{g['quant']} {g['accuracy']:.1%} / {g['agreement']:.1%}{' FLAGGED' if g['flagged'] else ''}"
        for g in task["ggufs"]
    ]
    return BenchmarkRow(
        task["task"],
        str(task["items"]),
        f"{task['accuracy']:.1%}",
        _number(task["accuracyNorm"], ".1%"),
        f"{task['chance']:.0%}",
        f"{task['centered']:+.3f}",
        "; ".join(ggufs) or "-",
        any(g["flagged"] for g in task["ggufs"]),
    )


def _quant_row(row: dict[str, Any]) -> QuantRow:
    return QuantRow(
        row["quant"],
        f"{row['sizeBytes'] / 1e6:.2f} MB",
        _number(row["meanKld"], ".3g"),
        _number(row["p99Kld"], ".3g"),
        _number(row["sameTop"], ".2%"),
        _number(row["maxMeanKld"], "g"),
        row["verdict"],
        row["verdict"] in ("pass", "base"),
        _number(row["generationTokensPerSecond"], ".0f"),
    )


def _pairs(mapping: dict[str, Any] | None) -> list[Fact]:
    return [Fact(key, _text(value)) for key, value in sorted((mapping or {}).items())]


def _row(user: dict[str, Any]) -> UserRow:
    created = user.get("createdAt") or ""
    return UserRow(
        user["id"],
        user["email"],
        user.get("displayName") or "",
        user["role"].lower(),
        user["disabled"],
        created[:10],
    )


def usage_per_day(rows: list[dict[str, Any]]) -> list[dict[str, float | str]]:
    """Every user's usage summed per day (oldest first), for the usage chart."""
    days: dict[str, dict[str, float | str]] = {}
    for row in rows:
        day = days.setdefault(
            row["day"], {"day": row["day"][5:], "tokens_in": 0, "tokens_out": 0, "answers": 0}
        )
        for key, field in (("tokens_in", "tokensIn"), ("tokens_out", "tokensOut"), ("answers", "answers")):
            day[key] = float(day[key]) + row[field]
    return [days[day] for day in sorted(days)]


class AdminState(AuthState):
    """The admin dashboard."""

    model_facts: list[Fact] = []
    lineage: list[Fact] = []
    verification: list[Fact] = []
    eval_facts: list[Fact] = []
    quant_rows: list[QuantRow] = []
    benchmark_rows: list[BenchmarkRow] = []
    plots: list[Plot] = []
    k_quants_note: str = ""
    users: list[UserRow] = []
    user_search: str = ""
    users_after: str = ""  # the cursor of the page shown ("" = the first page)
    users_before: list[str] = []  # cursors of the pages before it, to go back
    users_next: str = ""  # the cursor of the next page, "" when this is the last
    usage: rx.Field[list[dict[str, float | str]]] = rx.field([])
    delete_user_id: str = ""
    delete_user_email: str = ""
    admin_error: str = ""
    llama: list[LlamaRow] = []
    served_models: list[ModelRow] = []
    chart: rx.Field[list[dict[str, float | str]]] = rx.field([])
    cpu: str = ""
    memory: str = ""
    streams: int = 0
    database_ok: bool = False
    watch_id: int = 0
    watching: bool = False

    @rx.event
    async def open_page(self) -> EventSpec | list[EventSpec] | None:
        """on_load of /admin: non-admins go back to the chat."""
        if not self.logged_in:
            return rx.redirect("/login")
        if not self.is_admin:
            return [rx.redirect("/"), rx.toast.warning("The admin dashboard is for administrators only.")]
        self.admin_error = ""
        try:
            model = (await self._gql(MODEL))["model"]
            self.model_facts = _facts(model)
            self.lineage = _pairs(model["lineage"])
            self.verification = _pairs(model["verifyReport"])
            self._show_evaluation(model["evaluation"])
            self.served_models = [_model_row(m) for m in (await self._gql(MODELS))["models"]]
            await self._load_users()
            self.usage = usage_per_day((await self._gql(USAGE))["usageByUser"])
        except ApiError as exc:
            self.admin_error = exc.message
            return self._expired_redirect()
        self.watch_id += 1
        return AdminState.watch_status(self.watch_id)

    def _show_evaluation(self, card: dict[str, Any] | None) -> None:
        self.eval_facts = _eval_facts(card) if card else []
        self.quant_rows = [_quant_row(row) for row in card["quants"]] if card else []
        self.benchmark_rows = [_benchmark_row(task) for task in card["benchmarks"]] if card else []
        self.plots = [Plot(p["name"], p["dataUri"]) for p in card["plots"]] if card else []
        self.k_quants_note = (card or {}).get("kQuantsSkipped") or ""

    async def _load_users(self) -> None:
        variables = {"search": self.user_search.strip() or None, "after": self.users_after or None}
        page = (await self._gql(USERS, variables))["users"]
        self.users = [_row(edge["node"]) for edge in page["edges"]]
        info = page["pageInfo"]
        self.users_next = (info["endCursor"] or "") if info["hasNextPage"] else ""

    async def _users_page(self, after: str, before: list[str]) -> EventSpec | None:
        self.users_after, self.users_before = after, before
        try:
            await self._load_users()
        except ApiError as exc:
            self.admin_error = exc.message
        return self._expired_redirect()

    @rx.event
    async def next_users(self) -> EventSpec | None:
        if not self.users_next:
            return None
        return await self._users_page(self.users_next, [*self.users_before, self.users_after])

    @rx.event
    async def previous_users(self) -> EventSpec | None:
        if not self.users_before:
            return None
        return await self._users_page(self.users_before[-1], self.users_before[:-1])

    async def _change(self, query: str, variables: dict[str, Any]) -> EventSpec | None:
        self.admin_error = ""
        try:
            await self._gql(query, variables)
            await self._load_users()
        except ApiError as exc:
            self.admin_error = exc.message
        return self._expired_redirect()

    @rx.event
    async def set_user_search(self, value: str) -> EventSpec | None:
        self.user_search = value
        return await self._users_page("", [])

    @rx.event
    async def set_role(self, user_id: str, role: str) -> EventSpec | None:
        return await self._change(SET_ROLE, {"id": user_id, "role": role.upper()})

    @rx.event
    async def set_disabled(self, user_id: str, disabled: bool) -> EventSpec | None:
        return await self._change(SET_DISABLED, {"id": user_id, "disabled": disabled})

    @rx.event
    def ask_delete_user(self, user_id: str, email: str) -> None:
        self.delete_user_id, self.delete_user_email = user_id, email

    @rx.event
    def cancel_delete_user(self) -> None:
        self.delete_user_id = ""

    @rx.event
    async def confirm_delete_user(self) -> EventSpec | None:
        user_id, self.delete_user_id = self.delete_user_id, ""
        return await self._change(DELETE_USER, {"id": user_id})

    @rx.event
    def stop_watching(self) -> None:
        """on_unmount of the dashboard: the running status loop ends at its next tick."""
        self.watch_id += 1

    def _record(self, status: dict[str, Any]) -> None:
        self.cpu = f"{status['cpuPercent']:.0f}%"
        self.memory = f"{status['memoryRssMb']:.0f} MB ({status['systemMemoryPercent']:.0f}% of system)"
        self.streams = status["activeStreams"]
        self.database_ok = status["databaseOk"]
        self.llama = [
            LlamaRow(
                s["model"] or "",
                s["url"],
                s["status"],
                s["healthy"],
                f"{(s['slotsTotal'] or 0) - (s['slotsIdle'] or 0)} busy / {s['slotsTotal'] or 0}",
                f"{s['tokensPerSecond']:.1f}" if s["tokensPerSecond"] else "-",
            )
            for s in status["llamaServers"]
        ]
        point = {
            "time": datetime.fromisoformat(status["timestamp"]).strftime("%H:%M:%S"),
            "cpu": round(status["cpuPercent"], 1),
            "memory": round(status["memoryRssMb"], 1),
            "tokens": round(sum(s["tokensPerSecond"] or 0 for s in status["llamaServers"]), 1),
        }
        self.chart = [*self.chart[-(HISTORY_POINTS - 1) :], point]

    @rx.event(background=True)
    async def watch_status(self, watch_id: int):
        """Follow the `serverStatus` subscription while this dashboard is open."""
        async with self:
            token = await self._live_token()
            self.watching = True
        deadline = time.monotonic() + WATCH_SECONDS
        try:
            async with aclosing(subscribe(STATUS, {}, token)) as updates:
                async for data in updates:
                    async with self:
                        if self.watch_id != watch_id or time.monotonic() > deadline:
                            break
                        self._record(data["serverStatus"])
        except ApiError as exc:
            async with self:
                self.admin_error = f"Live status stopped: {exc.message}"
        async with self:
            if self.watch_id == watch_id:
                self.watching = False
