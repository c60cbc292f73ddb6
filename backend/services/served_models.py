"""The models this backend serves, by name: each with its own pool of llama-servers and its own tokenizer.

With a registry (`CHAKOR_MODEL_REGISTRY`, written by `chakor models`) every registered model gets a pool
of its llama-server and failover copies; without one there is one model, named after the GGUF of
`CHAKOR_MODEL_PATH` (`chakor` when unset), served by `CHAKOR_LLAMA_*` and prompted with
`CHAKOR_TOKENIZER_PATH`, exactly as before the registry existed.

A model is down when none of its servers answers a health probe; the others keep answering.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from backend.core.config import Settings
from backend.core.errors import UserError
from backend.services.llama import LlamaPool, ServerState
from common.model_registry import Kind, load_registry

LEGACY_NAME = "chakor"  # the one model's name when no GGUF is configured either


class UnknownModel(UserError):
    """A request named a model that is not served here."""

    code = "UNKNOWN_MODEL"


class ModelDown(UserError):
    """A request named a served model none of whose llama-servers is healthy."""

    code = "MODEL_UNAVAILABLE"


@dataclass
class ServedModel:
    """One served model: its name, servers, tokenizer, GGUF, kind, trained context and description."""

    name: str
    pool: LlamaPool
    tokenizer_path: Path | None
    gguf_path: Path | None
    kind: Kind = "chat"
    context_length: int | None = None
    description: str = ""

    async def is_up(self) -> bool:
        """Whether one of its servers is healthy: known from the pool's last probes or request, else probed
        now (the pool's own order and round robin are left alone)."""
        servers = self.pool.servers
        if not any(server.healthy for server in servers):
            await self.pool.probe_all()
        return any(server.healthy for server in servers)


def legacy_name(settings: Settings) -> str:
    """The one model's name without a registry: its GGUF file's name without `.gguf`, else `chakor`."""
    return settings.model_path.stem if settings.model_path is not None else LEGACY_NAME


@dataclass
class ModelRoster:
    """The served models in the registry's order, the default for a turn that names none, and whether
    they come from a registry (without one, the one model is not checked for health before a turn: its
    failure is the turn's LLAMA_UNAVAILABLE error, as before the registry existed)."""

    models: dict[str, ServedModel]
    default_name: str
    registered: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRoster:
        """The registry's models (RegistryError when the file is malformed), else the one configured model."""
        registry = load_registry(settings.model_registry) if settings.model_registry else None
        if registry is None or not registry.models or registry.default is None:
            pool = LlamaPool(settings.llama_urls, settings.llama_api_key)
            only = ServedModel(legacy_name(settings), pool, settings.tokenizer_path, settings.model_path)
            return cls({only.name: only}, only.name)
        models = {
            entry.name: ServedModel(
                entry.name,
                LlamaPool(entry.urls(settings.llama_host), settings.llama_api_key),
                entry.tokenizer_dir,
                entry.gguf_path,
                entry.kind,
                entry.context_length,
                entry.description,
            )
            for entry in registry.models
        }
        return cls(models, registry.default, registered=True)

    @property
    def default(self) -> ServedModel:
        return self.models[self.default_name]

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def get(self, name: str | None) -> ServedModel:
        """The model called `name` (the default for None); UnknownModel naming it and the served ones."""
        if name is None:
            return self.default
        found = self.models.get(name)
        if found is None:
            served = ", ".join(self.models)
            raise UnknownModel(f"unknown model {name[:64]!r}; this server serves: {served}")
        return found

    async def available(self, name: str | None) -> ServedModel:
        """`get(name)`, when one of its servers is healthy; ModelDown naming it otherwise."""
        model = self.get(name)
        if not await model.is_up():
            raise ModelDown(f"model {model.name!r} is down: none of its llama-servers answers; try another")
        return model

    def model_of(self, server: ServerState) -> str | None:
        """The name of the model whose pool `server` is one of."""
        return next((m.name for m in self.models.values() if server in m.pool.servers), None)

    async def close(self) -> None:
        """Close every model's pool."""
        await asyncio.gather(*(model.pool.close() for model in self.models.values()))
