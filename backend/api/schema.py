"""The Strawberry schema with its limits and error masking."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule
from pymongo.errors import ConnectionFailure
from strawberry.extensions import AddValidationRules, MaskErrors
from strawberry.tools import merge_types

from backend.api.limits import check_size_maxima, limit_extensions
from backend.api.resolvers.chat_features import ChatFeaturesMutation, ChatFeaturesQuery
from backend.api.resolvers.documents import DocumentsMutation, DocumentsQuery
from backend.api.resolvers.mutation import Mutation
from backend.api.resolvers.query import Query
from backend.api.resolvers.subscription import Subscription
from backend.api.response_budget import ResponseBudget
from backend.core.errors import UserError

INTERNAL_ERROR = "internal server error"
DATABASE_UNAVAILABLE = "database unavailable; try again shortly"
MAX_LOGGED_MESSAGE_CHARS = 300  # a refusal's message can quote the client's input; the log keeps a line
log = logging.getLogger("chakor.backend")


def _expected(error: GraphQLError) -> bool:
    """A refusal the API means to give: a UserError, or a query that does not parse or validate."""
    original = error.original_error
    return original is None or isinstance(original, UserError | GraphQLError)


def _should_mask(error: GraphQLError) -> bool:
    """Mask unexpected exceptions; validation errors and UserErrors are shown as they are."""
    return not _expected(error)


def log_error(error: GraphQLError) -> None:
    """An expected refusal as one INFO line (where, its code, its message); anything else as an ERROR
    with its traceback."""
    if not _expected(error):
        log.error("unexpected error in %s", error.path, exc_info=error.original_error)
        return
    code = getattr(error.original_error, "code", "GRAPHQL_VALIDATION_FAILED")
    message = " ".join(error.message.split())[:MAX_LOGGED_MESSAGE_CHARS]
    where = ".".join(str(part) for part in error.path) if error.path else "-"
    log.info("refused %s: %s: %s", where, code, message)


class ChakorSchema(strawberry.Schema):
    """The schema, logging each error by `log_error` instead of Strawberry's traceback for every one."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:
            log_error(error)


class ChakorMaskErrors(MaskErrors):
    """Masks unexpected errors; a database outage gets its own clear, retryable message."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_should_mask, error_message=INTERNAL_ERROR)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        if isinstance(error.original_error, ConnectionFailure):
            masked.message = DATABASE_UNAVAILABLE
            masked.extensions = {"code": "SERVICE_UNAVAILABLE"}
        return masked


def build_schema(introspection: bool = True) -> strawberry.Schema:
    """The API schema; without `introspection`, `__schema` and `__type` queries are refused."""
    no_introspection = (
        [] if introspection else [lambda: AddValidationRules([NoSchemaIntrospectionCustomRule])]
    )
    built = ChakorSchema(
        query=merge_types("Query", (Query, ChatFeaturesQuery, DocumentsQuery)),
        mutation=merge_types("Mutation", (Mutation, ChatFeaturesMutation, DocumentsMutation)),
        subscription=Subscription,
        extensions=[
            *limit_extensions(),
            ResponseBudget,
            *no_introspection,
            ChakorMaskErrors,
        ],
    )
    check_size_maxima(built._schema)
    return built


schema = build_schema()
