"""/graphql/upload: the one route that reads GraphQL multipart requests (file uploads).

Multipart bodies are what an HTML form on any site can POST without a CORS preflight, so the GraphQL
multipart request spec asks servers to guard them against cross-site request forgery. Here the route
takes nothing but multipart requests, each carrying a non-empty `Apollo-Require-Preflight` header (the
header Apollo's and other upload clients send for this purpose): a browser sends a custom header
cross-origin only after a preflight that CORS (CHAKOR_CORS_ORIGINS) answers. The main /graphql route
keeps multipart off. The body's size is bounded before parsing by `BodySizeLimit` (the upload limit
for this path).
"""

from __future__ import annotations

from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from strawberry.http import GraphQLRequestData
from strawberry.schema.base import BaseSchema

from backend.api.router import ChakorGraphQLRouter

PREFLIGHT_HEADER = "apollo-require-preflight"
NOT_MULTIPART = (
    "this route takes only GraphQL multipart requests (file uploads); send other operations to /graphql"
)
NO_PREFLIGHT = "a multipart request needs a non-empty Apollo-Require-Preflight header (CSRF protection)"


class UploadGraphQLRouter(ChakorGraphQLRouter):
    """The schema over multipart POSTs only: no GET, no WebSockets, no IDE."""

    def __init__(self, schema: BaseSchema, **kwargs: Any) -> None:
        super().__init__(
            schema,
            playground=None,
            multipart_uploads_enabled=True,
            allow_queries_via_get=False,
            subscription_protocols=(),
            **kwargs,
        )

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if content_type != "multipart/form-data":
            raise HTTPException(415, NOT_MULTIPART)
        if not request.headers.get(PREFLIGHT_HEADER, "").strip():
            raise HTTPException(400, NO_PREFLIGHT)
        return await super().parse_http_body(request)
