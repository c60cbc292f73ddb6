"""The model registry: which GGUFs this installation serves side by side, kept in one JSON file.

`chakor models add/list/remove` write it (after checking each GGUF), `chakor up` starts one llama-server per
entry on the entry's port, and the backend reads it to route each chat turn to its model's servers and
tokenizer. The file lives at `<var>/models.json`:

    {"version": 1, "default": "chat", "models": [{"name": "chat", "gguf": "/abs/model.gguf", ...}, ...]}

Every write replaces the file atomically (a temporary file in the same folder, then `os.replace`), so a
reader sees the old registry or the new one, never half of one. No file (or an empty one) means no
registry: the installation serves the one model of `CHAKOR_MODEL_PATH` as before.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

REGISTRY_FILE = "models.json"
VERSION = 1
# Letters, digits, `_` and `-`: a name is a URL path part (`/v1/models/NAME`) and a MongoDB field name
# (usage counts answers per model), where a dot or `$` would mean something else.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
Kind = Literal["chat", "base"]
KINDS: tuple[Kind, ...] = ("chat", "base")


class RegistryError(ValueError):
    """The registry file or a change to it is invalid; the message says which entry and why."""


@dataclass(frozen=True)
class RegisteredModel:
    """One served model: its GGUF (and that file's SHA-256 when registered), the tokenizer folder prompts are
    rendered with, its trained context, whether it is a chat or a base model, the eval report that vouches for
    it, and the port its llama-server listens on (`extra_urls`: failover copies of the same GGUF)."""

    name: str
    gguf: str
    sha256: str
    tokenizer: str
    context_length: int
    port: int
    kind: Kind = "chat"
    description: str = ""
    eval_report: str | None = None
    extra_urls: list[str] = field(default_factory=list)

    @property
    def gguf_path(self) -> Path:
        return Path(self.gguf)

    @property
    def tokenizer_dir(self) -> Path:
        return Path(self.tokenizer)

    def urls(self, host: str) -> list[str]:
        """The llama-servers that serve this model: its own on `host`, then its failover copies."""
        return [f"http://{host}:{self.port}", *self.extra_urls]


@dataclass(frozen=True)
class Registry:
    """The registered models in registration order and the name of the default one (None when empty)."""

    models: tuple[RegisteredModel, ...] = ()
    default: str | None = None

    def get(self, name: str) -> RegisteredModel | None:
        return next((model for model in self.models if model.name == name), None)

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.models]

    def next_port(self, first: int) -> int:
        """The lowest port from `first` on that no entry uses: ports stay put when others are removed."""
        taken = {model.port for model in self.models}
        return next(port for port in range(first, 65536) if port not in taken)

    def with_model(self, model: RegisteredModel, make_default: bool) -> Registry:
        """This registry with `model` added (the first model, or with `make_default`, becomes the default)."""
        check_name(model.name)
        if self.get(model.name) is not None:
            raise RegistryError(f"a model named {model.name!r} is registered already (remove it first)")
        if model.kind not in KINDS:
            raise RegistryError(f"kind must be one of {', '.join(KINDS)}, not {model.kind!r}")
        default = model.name if make_default or self.default is None else self.default
        return Registry((*self.models, model), default)

    def without(self, name: str) -> Registry:
        """This registry without `name`; the default passes to the first model left when it was the default."""
        if self.get(name) is None:
            raise RegistryError(f"no model named {name!r} is registered (see `chakor models list`)")
        left = tuple(model for model in self.models if model.name != name)
        default = self.default if self.default != name else (left[0].name if left else None)
        return Registry(left, default)


def check_name(name: str) -> None:
    """RegistryError unless `name` is a valid model name."""
    if not NAME_PATTERN.match(name):
        raise RegistryError(
            f"model name {name!r} must be 1-64 letters, digits, '_' or '-', starting with a letter or digit"
        )


def registry_path(var_dir: Path) -> Path:
    """Where the registry of the installation whose var folder is `var_dir` lives."""
    return var_dir / REGISTRY_FILE


def load_registry(path: Path) -> Registry:
    """The registry in `path`; an empty one when the file does not exist; RegistryError when it is malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Registry()
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: cannot read the model registry ({exc})") from None
    try:
        models = tuple(RegisteredModel(**entry) for entry in data["models"])
        default = data.get("default")
    except (KeyError, TypeError) as exc:
        raise RegistryError(f"{path}: malformed model registry ({exc})") from None
    registry = Registry(models, default if isinstance(default, str) else None)
    for model in models:
        check_name(model.name)
    if len(set(registry.names)) != len(models):
        raise RegistryError(f"{path}: a model name appears twice")
    if models and registry.get(registry.default or "") is None:
        registry = replace(registry, default=models[0].name)
    return registry


def save_registry(path: Path, registry: Registry) -> None:
    """Write `registry` to `path` atomically (the folder is made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": VERSION, "default": registry.default, "models": [asdict(m) for m in registry.models]}
    handle, temporary = tempfile.mkstemp(prefix=".models-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
