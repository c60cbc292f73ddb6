"""GraphQL multipart uploads (the spec's `operations` + `map` + file parts) for the tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

UPLOAD_PATH = "/graphql/upload"
UPLOAD = """
mutation($file: Upload!, $collection: String) {
  uploadDocument(file: $file, collection: $collection) {
    __typename
    ... on Document { id name collection kind bytes passages createdAt }
    ... on UploadRefusal { code message }
  }
}
"""


async def upload_response(
    http: httpx.AsyncClient,
    token: str | None,
    name: str,
    data: bytes,
    collection: str | None = None,
    preflight: bool = True,
    path: str = UPLOAD_PATH,
) -> httpx.Response:
    """POST one file as a GraphQL multipart request; the raw response."""
    operations = {"query": UPLOAD, "variables": {"file": None, "collection": collection}}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if preflight:
        headers["Apollo-Require-Preflight"] = "true"
    return await http.post(
        path,
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (name, data, "application/octet-stream")},
        headers=headers,
    )


async def upload(
    http: httpx.AsyncClient, token: str, name: str, data: bytes, collection: str | None = None
) -> dict[str, Any]:
    """The `uploadDocument` result (a Document or an UploadRefusal) of one upload."""
    response = await upload_response(http, token, name, data, collection)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]["uploadDocument"]
