"""The Strawberry schema with its limits and error masking."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule
from pymongo.errors import ConnectionFailure
from strawberry.extensions import AddValidationRules, MaskErrors
from strawberry.tools import merge_types

from backend.api.limits import check_size_maxima, limit_extensions
from backend.api.resolvers.chat_features import ChatFeaturesMutation, ChatFeaturesQuery
from backend.api.resolvers.mutation import Mutation
from backend.api.resolvers.query import Query
from backend.api.resolvers.subscription import Subscription
from backend.api.response_budget import ResponseBudget
from backend.core.errors import UserError

INTERNAL_ERROR = "internal server error"
DATABASE_UNAVAILABLE = "database unavailable; try again shortly"
log = logging.getLogger("chakor.backend")


def _should_mask(error: GraphQLError) -> bool:
    """Mask unexpected exceptions; validation errors and UserErrors are shown as they are."""
    original = error.original_error
    if original is None or isinstance(original, UserError | GraphQLError):
        return False
    log.error("unexpected error in %s", error.path, exc_info=original)
    return True


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
    built = strawberry.Schema(
        query=merge_types("Query", (Query, ChatFeaturesQuery)),
        mutation=merge_types("Mutation", (Mutation, ChatFeaturesMutation)),
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
