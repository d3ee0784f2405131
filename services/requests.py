"""Reading request bodies into protocol models with OpenAI-style errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from services.errors import BadRequestError, PayloadTooLargeError, describe_validation_errors

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(f"The request body is {len(raw)} bytes; the limit is {max_bytes}.")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequestError(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequestError("The request body must be a JSON object.", code="invalid_json")
    return data


def validate_body(data: dict[str, Any], model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise describe_validation_errors(exc.errors(include_url=False)) from None


async def parse_body(request: Request, model: type[ModelT], max_bytes: int) -> tuple[dict[str, Any], ModelT]:
    """The body as sent (to forward) and as validated (to read)."""
    data = await read_json_object(request, max_bytes)
    return data, validate_body(data, model)
