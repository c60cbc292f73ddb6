"""The GraphQL router, hardened against request bodies that are not text."""

from __future__ import annotations

import json

from pymongo.errors import ConnectionFailure
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.types.unset import UNSET, UnsetType

from backend.api.context import Context
from backend.core.errors import UserError


class ChakorGraphQLRouter(GraphQLRouter[Context, None]):
    """Strawberry's router; undecodable bytes are a 400 like any other bad JSON, not a 500."""

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
            return json.loads(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError("request body is not UTF-8 JSON", "", 0) from exc
