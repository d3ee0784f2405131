"""Reading request bodies into protocol models with OpenAI-style errors.

Every JSON body a service accepts goes through :func:`loads_json`: malformed JSON, JSON nested
deeper than the parser allows, and text holding a lone UTF-16 surrogate (``"\\ud800"``, which
no model, tokenizer or UTF-8 encoder accepts) are all ``400 invalid_json`` here, before any
model code sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from services.errors import BadRequestError, ClientDisconnected, PayloadTooLargeError, describe_validation_errors

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

# A lone surrogate can only arrive as a \\uD800-\\uDFFF escape or as its raw (invalid) UTF-8
# bytes, which json.loads decodes with 'surrogatepass'. Cheap to scan; the walk runs only on a hit.
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def loads_json(raw: bytes | str) -> Any:
    """Parse JSON from a request body.

    Raises ``BadRequestError`` (400, code ``invalid_json``) for malformed JSON, for nesting too
    deep to parse (``RecursionError``) and for strings or keys holding a lone UTF-16 surrogate.
    """
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequestError("The request body is nested too deeply to parse.", code="invalid_json") from None
    except ValueError as exc:
        raise BadRequestError(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    raw_bytes = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _SURROGATE_HINT.search(raw_bytes):
        where = _find_lone_surrogate(data, [])
        if where is not None:
            param = ".".join(where) or None
            at = f" at '{param}'" if param else ""
            raise BadRequestError(
                f"The request body holds a lone UTF-16 surrogate{at}; text must be valid Unicode.",
                param=param,
                code="invalid_json",
            )
    return data


def _find_lone_surrogate(value: Any, path: list[str]) -> list[str] | None:
    """The path to the first string holding a lone surrogate, iteratively (no recursion limit)."""
    stack: list[tuple[Any, list[str]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not _is_valid_unicode(item):
                return where
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not _is_valid_unicode(key):
                    return where
                stack.append((sub, [*where, key]))
        elif isinstance(item, list):
            stack.extend((sub, [*where, str(i)]) for i, sub in enumerate(item))
    return None


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object: 413 over ``max_bytes``, 400 ``invalid_json`` as in :func:`loads_json`."""
    raw = await request.body()
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(f"The request body is {len(raw)} bytes; the limit is {max_bytes}.")
    data = loads_json(raw)
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


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it as soon as the client disconnects.

    Call it after the body was read: the next ASGI message is then ``http.disconnect``.
    Raises :class:`ClientDisconnected` when the client went first (the app answers 499).
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnected()
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
