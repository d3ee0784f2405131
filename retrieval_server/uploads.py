"""Reading ``multipart/form-data`` uploads into documents, checked whole before any is stored."""

from __future__ import annotations

import re

from starlette.datastructures import UploadFile
from starlette.requests import Request

from retrieval_server.config import COLLECTION_PATTERN, RetrievalSettings
from retrieval_server.loaders import DocumentError, SourceDocument, load_upload
from retrieval_server.service import document_error
from services.errors import BadRequestError, PayloadTooLargeError

MAX_FILES = 64
FORM_OVERHEAD_BYTES = 64 * 1024


async def read_upload(request: Request, settings: RetrievalSettings) -> tuple[list[SourceDocument], str | None]:
    """Documents in the form's ``file`` (or ``files``) parts, and the ``collection`` field."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD_BYTES:
        raise PayloadTooLargeError(
            f"The upload is {declared} bytes; the limit is {limit}.", param="file", code="upload_too_large"
        )
    form = await request.form(max_files=MAX_FILES, max_fields=32)
    try:
        uploads = [f for f in [*form.getlist("file"), *form.getlist("files")] if isinstance(f, UploadFile)]
        if not uploads:
            raise BadRequestError(
                "Send the document as a form file field named 'file'.", param="file", code="missing_file"
            )
        collection = _field(form.get("collection"))
        if collection is not None and not re.match(COLLECTION_PATTERN, collection):
            raise BadRequestError(f"Invalid collection name '{collection}'.", param="collection")
        source, title = _field(form.get("source")), _field(form.get("title"))
        if len(uploads) > 1 and (source or title):
            raise BadRequestError("'source' and 'title' apply to a single uploaded file.", param="source")
        documents: list[SourceDocument] = []
        total = 0
        for upload in uploads:
            name = upload.filename or "upload"
            data = await upload.read()
            total += len(data)
            if total > limit:
                raise PayloadTooLargeError(
                    f"'{name}' takes the upload past {limit} bytes.", param="file", code="upload_too_large"
                )
            try:
                documents += load_upload(
                    name,
                    data,
                    source=source,
                    title=title,
                    media_type=upload.content_type,
                    max_chars=settings.max_document_chars,
                )
            except DocumentError as exc:
                raise document_error(exc, "file") from None
        if len(documents) > settings.max_documents_per_request * 100:
            raise PayloadTooLargeError(
                f"{len(documents)} records in one upload is too many.", code="too_many_documents"
            )
        return documents, collection
    finally:
        await form.close()


def _field(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
