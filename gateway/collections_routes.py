"""``/v1/collections`` on the gateway: the retrieval service's document collections, listed
and deleted through the public API (request id forwarded, the service's answer relayed).

Deleting is on unless ``GATEWAY_RETRIEVAL__MANAGE_COLLECTIONS=false``: the gateway's keys
carry no scopes, so an operator who hands keys to end users turns it off (403)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from gateway.clients import relay
from services.errors import PermissionDeniedError

router = APIRouter()

COLLECTION_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


async def _proxy(request: Request, method: str, path: str) -> Response:
    settings = request.app.state.settings.retrieval
    return await relay(request, method, settings.url.rstrip("/") + path, timeout_s=settings.manage_timeout_s)


@router.get("/v1/collections")
async def list_collections(request: Request) -> Response:
    return await _proxy(request, "GET", "/v1/collections")


@router.delete("/v1/collections/{name}")
async def delete_collection(request: Request, name: Annotated[str, Path(pattern=COLLECTION_PATTERN)]) -> Response:
    if not request.app.state.settings.retrieval.manage_collections:
        raise PermissionDeniedError(
            "Deleting collections through the gateway is turned off.", code="collections_read_only"
        )
    return await _proxy(request, "DELETE", f"/v1/collections/{name}")
