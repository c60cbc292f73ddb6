"""Everything a running backend shares between requests, started and closed with the app."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pymongo import AsyncMongoClient

from backend.core import db
from backend.core.config import Settings
from backend.services.auth import LoginLimits, ensure_admin
from backend.services.chat import ChatDeps
from backend.services.conversations import link_legacy_conversations
from backend.services.document_search import DocumentSearch
from backend.services.llama import LlamaPool
from backend.services.search import WebSearch
from backend.services.served_models import ModelRoster, ServedModel
from backend.services.status import StatusReporter
from backend.services.streams import StreamRegistry
from backend.services.uploads import DocumentLibrary
from common.hosts import Network, trusted_networks


def backend_id(settings: Settings) -> str:
    """This backend among several on one database: host and port (a restart on the same address
    inherits, and ends, the answers its predecessor left)."""
    return f"{socket.gethostname()}:{settings.backend_port}"


@dataclass
class AppServices:
    """Shared, long-lived services."""

    settings: Settings
    client: AsyncMongoClient
    models: ModelRoster
    search: WebSearch
    documents: DocumentSearch
    library: DocumentLibrary
    streams: StreamRegistry
    login_limits: LoginLimits
    status: StatusReporter
    trusted_proxies: tuple[Network, ...]

    @property
    def pool(self) -> LlamaPool:
        """The default model's llama-servers."""
        return self.models.default.pool

    @property
    def chat_deps(self) -> ChatDeps:
        """What the chat service needs, serving the default model (a turn picks its own, `for_model`)."""
        return self.deps_for(self.models.default)

    def deps_for(self, model: ServedModel) -> ChatDeps:
        """What the chat service needs to answer with `model`: its servers and its tokenizer."""
        deps = ChatDeps(self.settings, model.pool, self.search, self.streams, self.documents, self.models)
        return deps.for_model(model)

    @classmethod
    async def start(cls, settings: Settings) -> AppServices:
        """Connect to the database and build the services."""
        client = await db.connect(settings)
        await link_legacy_conversations()
        await ensure_admin(settings)
        models = ModelRoster.from_settings(settings)
        streams = StreamRegistry(settings.max_concurrent_streams_per_user, backend_id(settings))
        await streams.recover()  # answers this address's previous process left streaming
        streams.start_sweeper()  # and, from now on, answers any backend leaves unfinished
        return cls(
            settings=settings,
            client=client,
            models=models,
            search=WebSearch(settings),
            documents=DocumentSearch(settings),
            library=DocumentLibrary(settings),
            streams=streams,
            login_limits=LoginLimits.from_settings(settings),
            status=StatusReporter(models, client, streams),
            trusted_proxies=trusted_networks(settings.trusted_proxies),
        )

    async def close(self) -> None:
        """Release connections."""
        await self.streams.close()
        await self.models.close()
        await self.search.close()
        await self.client.close()
