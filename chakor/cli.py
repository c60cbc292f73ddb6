"""`chakor`: the one entry point, from raw text to a chat web app."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections import deque
from pathlib import Path

import httpx
import typer
from rich.table import Table

import backend.cli
import converter.cli
import documents.cli
import evaluation.cli
import trainer.cli
import trainer.data.cli
from chakor import bench, models, quickstart
from chakor.services import (
    ComponentError,
    backend_process,
    db_process,
    frontend_process,
    llama_process,
)
from chakor.supervisor import Component, Supervisor, SupervisorError, pid_alive, read_state
from common.cli import FAILED, USAGE, console, fail, settings_or_exit
from common.hosts import is_loopback
from common.llama_cpp import LlamaCppNotFound
from common.model_registry import Registry, RegistryError, load_registry, registry_path
from common.process import port_in_use
from common.settings import DEV_JWT_SECRET, Settings
from evaluation.report import EVAL_JSON, report_for

app = typer.Typer(help="Chakor: train your own LLM and chat with it in the browser.", no_args_is_help=True)


def state_file(settings: Settings) -> Path:
    return settings.var_dir / "run" / "state.json"


def default_model(settings: Settings) -> Path | None:
    """CHAKOR_MODEL_PATH, else the quickstart's served GGUF when it exists."""
    if settings.model_path:
        return settings.model_path
    return quickstart.quickstart_model(settings)


def tokenizer_beside(model: Path) -> Path | None:
    """The tokenizer folder next to a GGUF (its own folder, or a `tokenizer/` sibling as the quickstart writes)."""
    for folder in (model.parent / "tokenizer", model.parent):
        if (folder / "tokenizer.json").exists():
            return folder
    console.print(f"[yellow]no tokenizer next to {model}: set CHAKOR_TOKENIZER_PATH or chat will not work[/]")
    return None


def warn_unvetted(model: Path) -> None:
    """Warn when no `chakor eval` report beside `model` says this very file passed its gate."""
    report, row = report_for(model)
    if row is not None and row.passed:
        return
    if report is None:
        why = f"no {EVAL_JSON} next to it"
    elif row is None:
        why = f"{model.parent / EVAL_JSON} does not cover this file (name, size or SHA-256 differ)"
    else:
        why = row.message or f"{row.quant} failed its check"
    console.print(f"[yellow]warning: {model} has no passing eval report ({why}); run `chakor eval` on it[/]")


def llama_component(settings: Settings, model: Path, port: int, name: str = "llama-server") -> Component:
    """One llama-server serving `model` on `port`."""
    log_dir = settings.var_dir / "logs"
    llama_process(settings, model, log_dir, port)  # fail now on a missing GGUF or binary
    return Component(name, lambda: llama_process(settings, model, log_dir, port), settings.llama_host, port)


def registered_components(settings: Settings, registry: Registry) -> list[Component]:
    """One llama-server per registered model, on the model's own port, named `llama-server-NAME`."""
    return [
        llama_component(settings, model.gguf_path, model.port, f"llama-server-{model.name}")
        for model in registry.models
    ]


def build_components(
    settings: Settings, model: Path | None, frontend: bool, registry: Registry | None = None
) -> list[Component]:
    """The components to run, in start order: with a non-empty `registry`, its models instead of `model`."""
    log_dir = settings.var_dir / "logs"
    components = []
    if settings.uses_sidecar:
        components.append(
            Component(
                "database", lambda: db_process(settings, log_dir), settings.db_host, settings.db_port, 60
            )
        )
    if registry is not None and registry.models:
        components += registered_components(settings, registry)
    elif model is not None:
        components.append(llama_component(settings, model, settings.llama_port))
    components.append(
        Component(
            "backend",
            lambda: backend_process(settings, log_dir),
            settings.backend_host,
            settings.backend_port,
        )
    )
    if frontend:
        components.append(
            Component(
                "frontend",
                lambda: frontend_process(settings, log_dir),
                settings.frontend_host,
                settings.frontend_port,
                start_timeout=600,
            )
        )
    return components


def public_binds(settings: Settings, frontend: bool) -> list[str]:
    """The `NAME=HOST` settings of the parts `chakor up` starts that listen beyond this host."""
    hosts = {"CHAKOR_BACKEND_HOST": settings.backend_host, "CHAKOR_LLAMA_HOST": settings.llama_host}
    if frontend:
        hosts["CHAKOR_FRONTEND_HOST"] = settings.frontend_host
    return [f"{name}={host}" for name, host in hosts.items() if not is_loopback(host)]


def refuse_public_dev_secret(settings: Settings, frontend: bool, insecure: bool) -> None:
    """Exit (usage) when a part would listen beyond this host while tokens are signed with the public
    development secret (anyone could forge an admin's token), unless `--insecure` says so."""
    exposed = public_binds(settings, frontend)
    if not exposed or settings.jwt_secret != DEV_JWT_SECRET:
        return
    if not insecure:
        fail(
            f"refusing to listen beyond this host ({', '.join(exposed)}) with the development JWT secret, "
            "which anyone can use to forge tokens: set CHAKOR_JWT_SECRET (or CHAKOR_ENVIRONMENT=production), "
            "bind to 127.0.0.1, or pass --insecure",
            USAGE,
        )
    console.print(f"[red]--insecure: {', '.join(exposed)} with the development JWT secret[/]")


@app.command()
def up(
    model: Path | None = typer.Option(
        None,
        help="GGUF to serve alone (default: the registered models (`chakor models`), else CHAKOR_MODEL_PATH "
        "or the quickstart's).",
    ),
    frontend: bool = typer.Option(True, help="Also build and serve the web app."),
    insecure: bool = typer.Option(
        False, help="Listen beyond this host even with the development JWT secret (never in earnest)."
    ),
) -> None:
    """Start database, llama-server, backend and frontend; supervise them until Ctrl-C or `chakor down`.

    llama-server gets a new random API key on every start (unless CHAKOR_LLAMA_API_KEY names one),
    known to the backend only.
    """
    settings = settings_or_exit()
    refuse_public_dev_secret(settings, frontend, insecure)
    settings = settings.model_copy(
        update={"llama_api_key": settings.llama_api_key or secrets.token_urlsafe(32)}
    )
    if read_state(state_file(settings)):
        fail("Chakor is already running here: see `chakor status`, stop it with `chakor down`", FAILED)
    try:
        registry = load_registry(registry_path(settings.var_dir))
    except RegistryError as exc:
        fail(exc, USAGE)
    if model is not None:  # an explicit --model is served alone, as without a registry
        registry = Registry()
    model = model.resolve() if model else default_model(settings)
    if registry.models:
        console.print(f"serving the {len(registry.models)} registered models (`chakor models list`)")
        for registered in registry.models:
            warn_unvetted(registered.gguf_path)
        settings = settings.model_copy(update={"model_registry": registry_path(settings.var_dir)})
    elif model is None:
        console.print("[yellow]no model yet: llama-server will not start (run `chakor quickstart` first)[/]")
    else:
        warn_unvetted(model)
        tokenizer = settings.tokenizer_path or tokenizer_beside(model)
        settings = settings.model_copy(update={"model_path": model, "tokenizer_path": tokenizer})
    try:
        supervisor = Supervisor(
            build_components(settings, model, frontend, registry),
            state_file(settings),
            log_max_bytes=settings.log_max_bytes,
            log_backups=settings.log_backups,
        )
        console.print("Starting Chakor ...")
        supervisor.run_forever(on_ready=lambda: print_urls(settings, frontend, registry))
    except (ComponentError, LlamaCppNotFound) as exc:  # a missing GGUF or tool: what to install or set
        fail(f"cannot start: {exc}", USAGE)
    except SupervisorError as exc:  # a component was started and failed (or its port is taken)
        fail(f"cannot start: {exc}", FAILED)


def print_urls(settings: Settings, frontend: bool, registry: Registry) -> None:
    table = Table(title="Chakor is up", show_header=False)
    if frontend:
        table.add_row("Chat app", settings.frontend_url)
    table.add_row("GraphQL API", settings.graphql_url)
    for model in registry.models:
        table.add_row(f"llama-server {model.name}", model.urls(settings.llama_host)[0])
    if not registry.models:
        table.add_row("llama-server", settings.llama_url)
    console.print(table)
    console.print("Stop with Ctrl-C or `chakor down`.")


@app.command()
def down(timeout: float = typer.Option(30.0, help="Seconds to wait for a clean shutdown.")) -> None:
    """Stop a running `chakor up` and all of its components."""
    settings = settings_or_exit()
    state = read_state(state_file(settings))
    if state is None:
        console.print("Chakor is not running.")
        return
    pid = state["supervisor_pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            console.print("Chakor stopped.")
            return
        time.sleep(0.2)
    fail(f"supervisor {pid} did not stop within {timeout:.0f}s", FAILED)


def component_healthy(info: dict) -> bool:
    """Probe a component recorded in the state file: its health URL, else its port."""
    if not info["health_url"]:
        return port_in_use(info["host"], info["port"])
    try:
        return httpx.get(info["health_url"], timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@app.command()
def status() -> None:
    """Each component's state, pid, port and uptime."""
    settings = settings_or_exit()
    state = read_state(state_file(settings))
    if state is None:
        console.print("Chakor is not running.")
        raise typer.Exit(3)
    table = Table("component", "state", "pid", "address", "uptime", "restarts")
    for name, info in state["components"].items():
        healthy = component_healthy(info)
        uptime = f"{time.time() - info['started_at']:.0f}s" if info["started_at"] else "-"
        table.add_row(
            name,
            "[green]healthy[/]" if healthy else "[red]unhealthy[/]",
            str(info["pid"]),
            f"{info['host']}:{info['port']}",
            uptime,
            str(info["restarts"]),
        )
    console.print(table)


@app.command()
def logs(
    component: str = typer.Argument(..., help="database, llama-server, backend or frontend"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n"),
) -> None:
    """Print a component's log."""
    settings = settings_or_exit()
    log_dir = settings.var_dir / "logs"
    matches = sorted(log_dir.glob(f"{component}*.log"))
    if not matches:
        fail(f"no log for {component!r} in {log_dir}", USAGE)
    # One handle for the tail and the follow, so a line written in between is not lost; a deque keeps
    # only the last `lines` lines of a log of any size in memory.
    with matches[0].open(errors="replace") as handle:
        print("".join(deque(handle, maxlen=lines)), end="", flush=True)
        while follow:
            line = handle.readline()
            if line:
                print(line, end="", flush=True)
            else:
                time.sleep(0.3)


# Each package adds its own commands, in pipeline order.
for commands in (
    trainer.data.cli,
    trainer.cli,
    converter.cli,
    evaluation.cli,
    backend.cli,
    documents.cli,
    quickstart,
    models,
    bench,
):
    commands.register(app)
