"""Thin HTTP routes: read the request, call the service on app.state, answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from retrieval_server.config import COLLECTION_PATTERN
from retrieval_server.documents import IngestOutcome
from retrieval_server.protocol import DocumentOut, IngestRequest, SearchRequest
from retrieval_server.service import RetrievalService
from retrieval_server.uploads import read_upload
from services.errors import OpenAIError
from services.requests import parse_body, read_json_object, validate_body

router = APIRouter()

Collection = Annotated[str | None, Query(pattern=COLLECTION_PATTERN)]


def _service(request: Request) -> RetrievalService:
    return request.app.state.retrieval


def _outcome(outcome: IngestOutcome) -> dict[str, Any]:
    return {
        "id": outcome.document_id,
        "object": "document",
        "title": outcome.title,
        "source": outcome.source,
        "status": outcome.status,
        "chunks": outcome.chunks,
    }


@router.post("/v1/documents")
async def ingest_documents(request: Request) -> JSONResponse:
    service = _service(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        documents, collection = await read_upload(request, service.settings)
    elif media in ("application/json", ""):
        data = await read_json_object(request, service.settings.max_upload_bytes)
        if "documents" not in data:  # one document sent on its own
            data = {
                "documents": [{k: v for k, v in data.items() if k != "collection"}],
                "collection": data.get("collection"),
            }
        body = validate_body(data, IngestRequest)
        documents, collection = service.documents_from_json(body.documents), body.collection
    else:
        raise OpenAIError(
            f"Send JSON or multipart/form-data, not '{media}'.",
            status_code=415,
            error_type="invalid_request_error",
            code="unsupported_media_type",
        )
    outcomes = await service.ingest(documents, collection)
    return JSONResponse(
        {"object": "list", "data": [_outcome(o) for o in outcomes], "collection": service.collection(collection)}
    )


@router.get("/v1/documents")
async def list_documents(
    request: Request,
    collection: Collection = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=128)] = None,
) -> JSONResponse:
    records, last = await _service(request).list_documents(collection, limit, after)
    data = [DocumentOut.from_record(r).model_dump() for r in records]
    return JSONResponse({"object": "list", "data": data, "has_more": last is not None, "last_id": last})


@router.get("/v1/documents/{document_id}")
async def get_document(request: Request, document_id: str, collection: Collection = None) -> JSONResponse:
    record = await _service(request).get_document(collection, document_id)
    return JSONResponse(DocumentOut.from_record(record).model_dump())


@router.delete("/v1/documents/{document_id}")
async def delete_document(request: Request, document_id: str, collection: Collection = None) -> JSONResponse:
    await _service(request).delete_document(collection, document_id)
    return JSONResponse({"id": document_id, "object": "document", "deleted": True})


@router.get("/v1/collections")
async def list_collections(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": await _service(request).list_collections()})


@router.delete("/v1/collections/{name}")
async def delete_collection(request: Request, name: Annotated[str, Path(pattern=COLLECTION_PATTERN)]) -> JSONResponse:
    await _service(request).delete_collection(name)
    return JSONResponse({"id": name, "object": "collection", "deleted": True})


@router.post("/v1/search")
async def search(request: Request) -> JSONResponse:
    _, body = await parse_body(request, SearchRequest, 1024 * 1024)
    return JSONResponse(await _service(request).search(body))
