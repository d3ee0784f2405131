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

from gateway.clients import relay
from services.errors import PayloadTooLargeError

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
    content = None
    if streamed:
        limit = settings.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(
                f"The upload is {declared} bytes; the limit is {limit}.", param="file", code="upload_too_large"
            )
        content = _limited(request, limit)
    return await relay(
        request,
        method,
        settings.retrieval.url.rstrip("/") + path,
        content=content,
        forward_headers=FORWARDED_REQUEST_HEADERS,
        params=QUERY_PARAMS,
        timeout_s=settings.request_timeout_s,
    )


@router.post("/v1/documents")
async def ingest_documents(request: Request) -> Response:
    return await _proxy(request, "POST", "/v1/documents", streamed=True)


@router.get("/v1/documents")
async def list_documents(request: Request) -> Response:
    return await _proxy(request, "GET", "/v1/documents")


@router.delete("/v1/documents/{document_id}")
async def delete_document(document_id: str, request: Request) -> Response:
    return await _proxy(request, "DELETE", f"/v1/documents/{quote(document_id, safe='')}")


@router.post("/v1/search")
async def search(request: Request) -> Response:
    """``POST /v1/search`` (``query``, ``top_k``, ``filter``) behind the key check too."""
    return await _proxy(request, "POST", "/v1/search", streamed=True)
