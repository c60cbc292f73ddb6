"""`chakor models add|list|remove`: the registry of models served side by side (`common.model_registry`).

`add` checks a GGUF before it is registered: the file is a readable GGUF, a chat model carries a chat
template, and the tokenizer folder's vocabulary is the GGUF's, id for id (prompts are rendered with that
tokenizer, so a mismatch would feed the model other tokens than the text says). Each refusal is one line and
exit status 2; the registry file is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from common.chat import load_tokenizer
from common.cli import console, settings_or_exit, user_errors
from common.hashing import sha256_file
from common.model_registry import (
    Kind,
    RegisteredModel,
    Registry,
    RegistryError,
    check_name,
    load_registry,
    registry_path,
    save_registry,
)
from common.settings import Settings
from evaluation.report import EVAL_JSON

models_app = typer.Typer(help="The models served side by side: register, list, remove.", no_args_is_help=True)
clear_errors = user_errors(RegistryError)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@dataclass(frozen=True)
class GgufFacts:
    """What registering needs from a GGUF's metadata."""

    architecture: str
    context_length: int
    chat_template: str | None
    tokens: list[str]


def read_gguf_facts(path: Path) -> GgufFacts:
    """The GGUF's architecture, trained context, chat template and token table; RegistryError when unreadable."""
    from gguf import GGUFReader  # imported here: it pulls in numpy

    if not path.is_file():
        raise RegistryError(f"{path}: no such GGUF file")
    try:
        fields = GGUFReader(path).fields
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise RegistryError(f"{path}: not a readable GGUF ({exc})") from None

    def value(name: str) -> Any:
        found = fields.get(name)
        return None if found is None else found.contents()

    architecture = value("general.architecture")
    context = value(f"{architecture}.context_length") if architecture else None
    tokens = value("tokenizer.ggml.tokens")
    if not isinstance(architecture, str) or not isinstance(context, int) or not isinstance(tokens, list):
        raise RegistryError(f"{path}: the GGUF lacks its architecture, context length or token table")
    template = value("tokenizer.chat_template")
    return GgufFacts(architecture, context, template if isinstance(template, str) else None, tokens)


def check_tokenizer(tokenizer_dir: Path, facts: GgufFacts, gguf: Path) -> None:
    """RegistryError unless every token of the tokenizer in `tokenizer_dir` has the same id in the GGUF."""
    try:
        vocab = load_tokenizer(tokenizer_dir).get_vocab(with_added_tokens=True)
    except Exception as exc:  # tokenizers raises its own Exception type for a malformed file
        raise RegistryError(f"{tokenizer_dir}: not a tokenizer folder ({exc})") from None
    if len(vocab) > len(facts.tokens):
        raise RegistryError(
            f"tokenizer {tokenizer_dir} has {len(vocab)} tokens, the GGUF {gguf.name} only {len(facts.tokens)}"
        )
    wrong = sorted(i for token, i in vocab.items() if facts.tokens[i] != token)
    if wrong:
        raise RegistryError(
            f"tokenizer {tokenizer_dir} does not match the GGUF {gguf.name}: "
            f"{len(wrong)} token ids differ (first: {wrong[0]})"
        )


def tokenizer_for(gguf: Path, given: Path | None) -> Path:
    """The tokenizer folder given, else the one beside the GGUF (its `tokenizer/` sibling or its own folder)."""
    if given is not None:
        return given.resolve()
    for folder in (gguf.parent / "tokenizer", gguf.parent):
        if (folder / "tokenizer.json").is_file():
            return folder
    raise RegistryError(f"no tokenizer folder beside {gguf}: pass --tokenizer DIR")


def checked_model(
    settings: Settings, registry: Registry, name: str, gguf: Path, tokenizer: Path | None, kind: Kind,
    description: str,
) -> RegisteredModel:  # fmt: skip
    """The registry entry for `gguf` once it passed every check, on the next free port."""
    check_name(name)
    gguf = gguf.resolve()
    facts = read_gguf_facts(gguf)
    if kind == "chat" and not facts.chat_template:
        raise RegistryError(f"{gguf.name} has no chat template: register it with --kind base")
    tokenizer_dir = tokenizer_for(gguf, tokenizer)
    check_tokenizer(tokenizer_dir, facts, gguf)
    report = gguf.parent / EVAL_JSON
    return RegisteredModel(
        name=name,
        gguf=str(gguf),
        sha256=sha256_file(gguf),
        tokenizer=str(tokenizer_dir),
        context_length=facts.context_length,
        port=registry.next_port(settings.llama_port),
        kind=kind,
        description=description,
        eval_report=str(report) if report.is_file() else None,
    )


def add_model(
    settings: Settings, name: str, gguf: Path, tokenizer: Path | None = None, kind: Kind = "chat",
    description: str = "", make_default: bool = False,
) -> RegisteredModel:  # fmt: skip
    """Check `gguf` and register it as `name`; the registry file is rewritten only when every check passed."""
    path = registry_path(settings.var_dir)
    registry = load_registry(path)
    if registry.get(name) is not None:
        raise RegistryError(f"a model named {name!r} is registered already (remove it first)")
    model = checked_model(settings, registry, name, gguf, tokenizer, kind, description)
    save_registry(path, registry.with_model(model, make_default))
    return model


@models_app.command()
@clear_errors
def add(
    name: str = typer.Argument(..., help="the model's name in the app and the API (letters, digits, _ -)"),
    gguf: Path = typer.Argument(..., help="the GGUF file to serve"),
    tokenizer: Path | None = typer.Option(None, help="tokenizer folder (default: the one beside the GGUF)"),
    kind: str = typer.Option("chat", help="chat (answers turns) or base (a pretrained model)"),
    default: bool = typer.Option(False, "--default", help="make it the model new conversations use"),
    description: str = typer.Option("", help="one line shown in the model picker"),
) -> None:
    """Check a GGUF and register it; `chakor up` then serves it beside the others."""
    if kind not in ("chat", "base"):
        raise RegistryError(f"--kind must be chat or base, not {kind!r}")
    settings = settings_or_exit()
    model = add_model(
        settings, name, gguf, tokenizer, "base" if kind == "base" else "chat", description, default
    )
    console.print(
        f"registered {model.name} ({model.kind}, context {model.context_length}) on port {model.port}"
    )


@models_app.command("list")
@clear_errors
def list_models() -> None:
    """The registered models, the default first marked with *."""
    registry = load_registry(registry_path(settings_or_exit().var_dir))
    if not registry.models:
        console.print("no models registered: `chakor up` serves CHAKOR_MODEL_PATH (or the quickstart's)")
        return
    table = Table("name", "kind", "context", "port", "GGUF", "eval report", title="registered models")
    for model in registry.models:
        mark = "*" if model.name == registry.default else ""
        table.add_row(
            f"{model.name}{mark}", model.kind, str(model.context_length), str(model.port), model.gguf,
            model.eval_report or "-",
        )  # fmt: skip
    console.print(table)


@models_app.command()
@clear_errors
def remove(name: str = typer.Argument(..., help="a registered model's name")) -> None:
    """Unregister a model (its GGUF stays on disk)."""
    path = registry_path(settings_or_exit().var_dir)
    save_registry(path, load_registry(path).without(name))
    console.print(f"removed {name}")
