"""The GraphQL router, hardened against request bodies that are not text."""

from __future__ import annotations

import json
from typing import Any

from cross_web import HTTPException
from pymongo.errors import ConnectionFailure
from starlette.requests import Request
from starlette.responses import Response
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.schema.base import BaseSchema
from strawberry.types.unset import UNSET, UnsetType

from backend.api.context import Context
from backend.api.playground import Playground
from backend.core.errors import UserError

NOT_AN_OPERATION = "The request body must be a JSON object (a GraphQL operation)"


class ChakorGraphQLRouter(GraphQLRouter[Context, None]):
    """Strawberry's router with our own GraphiQL page (`playground`, None: no IDE) and its files at /static/.

    Undecodable bytes and JSON that is not an object are a 400 like any other bad JSON, not a 500.
    """

    def __init__(self, schema: BaseSchema, *, playground: Playground | None, **kwargs: Any) -> None:
        super().__init__(schema, graphql_ide="graphiql" if playground else None, **kwargs)
        self.playground = playground
        if playground is not None:
            playground.warn_if_missing()
            self.add_api_route("/static/{name}", playground.asset, methods=["GET"], include_in_schema=False)

    async def render_graphql_ide(self, request: Request) -> Response:  # type: ignore[override]
        """Our page, referencing only files this backend serves (Strawberry's loads them from a CDN)."""
        assert self.playground is not None  # Strawberry renders an IDE only when one is configured
        return self.playground.page(request.url.path)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Check the credentials of `connection_init`: a bad token closes the socket (4403) at once.

        A connection without credentials is accepted (operations that need a user then fail one by
        one with "authentication required"); each operation checks the token again, so one that
        expires mid-connection ends only the operations started after it. While the database is down
        the token cannot be checked here: the connection is accepted and each operation reports the
        outage ("database unavailable") as it does over HTTP.
        """
        if context.authorization is not None:
            try:
                await context.user()
            except UserError as exc:
                raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from None
            except ConnectionFailure:
                return UNSET
        return UNSET

    def decode_json(self, data: str | bytes) -> object:
        try:
            decoded = json.loads(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError("request body is not UTF-8 JSON", "", 0) from exc
        if not isinstance(decoded, dict | list):  # Strawberry reads `.get` of anything else (a 500)
            raise HTTPException(400, NOT_AN_OPERATION)
        return decoded
