"""The FastAPI application: GraphQL at /graphql (HTTP and WebSockets) and, for file uploads only, at
/graphql/upload (multipart), the OpenAI-compatible API at /v1 and /healthz."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.websockets import WebSocket

from backend.api.context import Context
from backend.api.openai_compat import build_router as openai_router
from backend.api.playground import Playground
from backend.api.router import ChakorGraphQLRouter
from backend.api.schema import build_schema
from backend.api.upload_router import PREFLIGHT_HEADER, UploadGraphQLRouter
from backend.core.config import Settings, get_settings
from backend.core.headers import api_headers
from backend.core.limits import BodySizeLimit
from backend.core.logs import configure_logging
from backend.services.container import AppServices
from common.response_headers import ResponseHeaders

log = logging.getLogger("chakor.backend")
DB_CONNECT_SECONDS = 30.0
UPLOAD_PATH = "/graphql/upload"  # the only route that reads multipart bodies (backend.api.upload_router)


async def _start_services(settings: Settings) -> AppServices:
    """Start the services, waiting a while for the database to come up."""
    deadline = time.monotonic() + DB_CONNECT_SECONDS
    while True:
        try:
            return await AppServices.start(settings)
        except Exception as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("database not ready (%s); retrying", exc)
            await asyncio.sleep(1.0)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app from `settings` (the process-wide settings by default)."""
    settings = settings or get_settings()
    configure_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await _start_services(settings)
        # What start-up made (schema, tokenizer, settings) lives as long as the app: out of the collector's
        # reach, a full collection no longer walks it while a request waits (measured: /healthz during a
        # wide tree load, benchmarks/test_bounded_response_bench.py).
        gc.freeze()
        try:
            yield
        finally:
            await app.state.services.close()

    async def get_context(request: Request = None, websocket: WebSocket = None) -> Context:  # type: ignore[assignment]
        connection = request or websocket
        assert connection is not None
        return Context(connection.app.state.services)

    app = FastAPI(title="Chakor", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    schema = build_schema(introspection=settings.introspection_enabled)
    router = ChakorGraphQLRouter(
        schema,
        context_getter=get_context,
        playground=Playground(settings.graphiql_assets_dir) if settings.graphiql_enabled else None,
        allow_queries_via_get=False,
        allowed_origins=settings.cors_origins,
    )
    app.include_router(router, prefix="/graphql")
    uploads = UploadGraphQLRouter(schema, context_getter=get_context, allowed_origins=settings.cors_origins)
    app.include_router(uploads, prefix=UPLOAD_PATH)
    app.include_router(openai_router(), prefix="/v1")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", PREFLIGHT_HEADER],
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        paths={UPLOAD_PATH: settings.max_upload_request_bytes},
    )
    app.add_middleware(ResponseHeaders, rewrite=api_headers)
    return app
