"""``/v1/documents`` on the gateway: the retrieval service's document API behind the
gateway's key check, so the web page (and any client) can add, list and delete documents.

- ``POST /v1/documents``: JSON or ``multipart/form-data`` (field ``file``, one or more
  .txt/.md/.html/.pdf/.jsonl files; optional ``collection``, ``source``, ``title``), streamed
  through; at most ``GATEWAY_MAX_UPLOAD_BYTES`` (413 beyond). Answers
  ``{"object": "list", "data": [{"id", "title", "source", "status", "chunks"}], "collection"}``.
- ``GET /v1/documents?collection=&limit=&after=``: ``{"object": "list", "data", "has_more", "last_id"}``.
- ``DELETE /v1/documents/{id}?collection=``: ``{"id", "object": "document", "deleted": true}``.

The retrieval service's answers (errors included) are relayed with their status; when it
cannot be reached the gateway answers 503 ``upstream_unavailable``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.errors import PayloadTooLargeError, from_upstream_body
from services.http import map_httpx_errors
from services.logging import request_id_var

router = APIRouter()

FORWARDED_REQUEST_HEADERS = ("content-type", "content-length")
QUERY_PARAMS = ("collection", "limit", "after")


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    sent = 0
    async for chunk in request.stream():
        sent += len(chunk)
        if sent > limit:
            raise PayloadTooLargeError(
                f"The upload is over the limit of {limit} bytes.", param="file", code="upload_too_large"
            )
        yield chunk


async def _proxy(request: Request, method: str, path: str, streamed: bool = False) -> Response:
    settings = request.app.state.settings
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    request_id = request_id_var.get()
    if request_id:
        headers["x-request-id"] = request_id
    params = {k: v for k, v in request.query_params.items() if k in QUERY_PARAMS}
    content = None
    if streamed:
        limit = settings.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(
                f"The upload is {declared} bytes; the limit is {limit}.", param="file", code="upload_too_large"
            )
        content = _limited(request, limit)
    url = settings.retrieval.url.rstrip("/") + path
    with map_httpx_errors("the retrieval service"):
        answer = await request.app.state.http.request(
            method, url, params=params, content=content, headers=headers, timeout=settings.request_timeout_s
        )
    if answer.headers.get("content-type", "").startswith("application/json"):
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")
    raise from_upstream_body(answer.status_code if answer.status_code >= 400 else 502, answer.content)


@router.post("/v1/documents")
async def ingest_documents(request: Request) -> Response:
    return await _proxy(request, "POST", "/v1/documents", streamed=True)


@router.get("/v1/documents")
async def list_documents(request: Request) -> Response:
    return await _proxy(request, "GET", "/v1/documents")


@router.delete("/v1/documents/{document_id}")
async def delete_document(document_id: str, request: Request) -> Response:
    return await _proxy(request, "DELETE", f"/v1/documents/{quote(document_id, safe='')}")
