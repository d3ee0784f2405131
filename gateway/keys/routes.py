"""The admin API for virtual keys, behind the master key (checked by gateway/auth.py).

    POST   /admin/keys               create: the answer carries the key, once
    GET    /admin/keys               list (``?owner=``)
    GET    /admin/keys/{id}          one key
    PATCH  /admin/keys/{id}          change limits, models, labels, expiry
    POST   /admin/keys/{id}/rotate   a new key; the old one works for ``grace_period_s``
    POST   /admin/keys/{id}/revoke   revoke (DELETE /admin/keys/{id} does the same)

No answer, log line or error ever carries a key other than the one just created.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.keys.records import KeyCreate, KeyRotate, KeyUpdate, key_json
from gateway.keys.resolver import KeyResolver
from gateway.keys.store import KeyStore
from services.errors import NotFoundError
from services.requests import read_json_object, validate_body

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/admin/keys", include_in_schema=False)

MAX_ADMIN_BODY = 64 * 1024


async def _body(request: Request, model: type[BaseModel]) -> Any:
    return validate_body(await read_json_object(request, MAX_ADMIN_BODY), model)


def _resolver(request: Request) -> KeyResolver:
    return request.app.state.keys


async def _store(request: Request) -> KeyStore:
    return await _resolver(request).store()


def _not_found(key_id: str) -> NotFoundError:
    return NotFoundError(f"No API key with id '{key_id}'.", param="id", code="key_not_found")


@router.post("")
async def create_key(request: Request) -> JSONResponse:
    spec: KeyCreate = await _body(request, KeyCreate)
    row, plaintext = await (await _store(request)).create(spec)
    logger.info("api key created", extra={"key_id": row.id, "owner": row.owner})
    return JSONResponse({**key_json(row), "key": plaintext}, status_code=201)


@router.get("")
async def list_keys(request: Request, owner: str | None = None) -> JSONResponse:
    rows = await (await _store(request)).list_keys(owner)
    return JSONResponse({"object": "list", "data": [key_json(row) for row in rows]})


@router.get("/{key_id}")
async def get_key(key_id: str, request: Request) -> JSONResponse:
    row = await (await _store(request)).get(key_id)
    if row is None:
        raise _not_found(key_id)
    return JSONResponse(key_json(row))


@router.patch("/{key_id}")
async def update_key(key_id: str, request: Request) -> JSONResponse:
    change: KeyUpdate = await _body(request, KeyUpdate)
    row = await (await _store(request)).update(key_id, change.model_dump(exclude_unset=True))
    if row is None:
        raise _not_found(key_id)
    _resolver(request).forget()
    logger.info("api key updated", extra={"key_id": key_id, "fields": sorted(change.model_fields_set)})
    return JSONResponse(key_json(row))


@router.post("/{key_id}/rotate")
async def rotate_key(key_id: str, request: Request) -> JSONResponse:
    spec: KeyRotate = await _body(request, KeyRotate)
    rotated = await (await _store(request)).rotate(key_id, spec.grace_period_s)
    if rotated is None:
        raise _not_found(key_id)
    row, plaintext = rotated
    _resolver(request).forget()
    logger.info("api key rotated", extra={"key_id": key_id, "grace_period_s": spec.grace_period_s})
    return JSONResponse({**key_json(row), "key": plaintext})


async def _revoke(key_id: str, request: Request) -> JSONResponse:
    row = await (await _store(request)).update(key_id, {"revoked": True})
    if row is None:
        raise _not_found(key_id)
    _resolver(request).forget()
    logger.info("api key revoked", extra={"key_id": key_id})
    return JSONResponse(key_json(row))


router.add_api_route("/{key_id}/revoke", _revoke, methods=["POST"])
router.add_api_route("/{key_id}", _revoke, methods=["DELETE"])
