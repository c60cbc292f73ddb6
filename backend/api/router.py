"""The GraphQL router, hardened against request bodies that are not text."""

from __future__ import annotations

import json

from strawberry.fastapi import GraphQLRouter

from backend.api.context import Context


class ChakorGraphQLRouter(GraphQLRouter[Context, None]):
    """Strawberry's router; undecodable bytes are a 400 like any other bad JSON, not a 500."""

    def decode_json(self, data: str | bytes) -> object:
        try:
            return json.loads(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError("request body is not UTF-8 JSON", "", 0) from exc
