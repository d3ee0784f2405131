"""One error type for every service, rendered as OpenAI error JSON.

    OpenAIError
    ├── BadRequestError            400 invalid_request_error
    │   └── ContextLengthError     400 invalid_request_error / context_length_exceeded
    ├── AuthenticationError        401 authentication_error
    ├── PermissionDeniedError      403 permission_error
    ├── NotFoundError              404 not_found_error
    ├── ConflictError              409 conflict_error
    ├── PayloadTooLargeError       413 invalid_request_error
    ├── RateLimitError             429 rate_limit_error
    ├── InternalServerError        500 server_error
    ├── NotImplementedFeatureError 501 not_implemented_error
    ├── UpstreamError              502 upstream_error   (a dependency answered badly)
    ├── ServiceUnavailableError    503 service_unavailable (a dependency is down)
    └── UpstreamTimeoutError       504 timeout_error

Body: ``{"error": {"message", "type", "param", "code"}}``. Routes raise these; the
handlers installed by :func:`install_error_handlers` render them, and
:func:`sse_error` renders one as a server-sent event for a stream already under way.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class OpenAIError(Exception):
    status_code: int = 500
    error_type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers
        if status_code is not None:
            self.status_code = status_code
        if error_type is not None:
            self.error_type = error_type

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


class BadRequestError(OpenAIError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthError(BadRequestError):
    def __init__(self, message: str, *, param: str | None = "messages") -> None:
        super().__init__(message, param=param, code="context_length_exceeded")


class AuthenticationError(OpenAIError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDeniedError(OpenAIError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(OpenAIError):
    status_code = 404
    error_type = "not_found_error"


class ConflictError(OpenAIError):
    status_code = 409
    error_type = "conflict_error"


class PayloadTooLargeError(OpenAIError):
    status_code = 413
    error_type = "invalid_request_error"


class RateLimitError(OpenAIError):
    status_code = 429
    error_type = "rate_limit_error"


class InternalServerError(OpenAIError):
    status_code = 500
    error_type = "server_error"


class NotImplementedFeatureError(OpenAIError):
    status_code = 501
    error_type = "not_implemented_error"


class UpstreamError(OpenAIError):
    status_code = 502
    error_type = "upstream_error"


class ServiceUnavailableError(OpenAIError):
    status_code = 503
    error_type = "service_unavailable"


class UpstreamTimeoutError(OpenAIError):
    status_code = 504
    error_type = "timeout_error"


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was ready; nobody reads a reply."""


_BY_STATUS: dict[int, type[OpenAIError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        PayloadTooLargeError,
        RateLimitError,
        InternalServerError,
        NotImplementedFeatureError,
        UpstreamError,
        ServiceUnavailableError,
        UpstreamTimeoutError,
    )
}


def error_for_status(status_code: int, message: str, **kwargs: Any) -> OpenAIError:
    """The error class that owns ``status_code`` (422 counts as 400)."""
    if status_code == 422:
        status_code = 400
    cls = _BY_STATUS.get(status_code)
    if cls is None:  # e.g. 405, 415: still the client's error
        error_type = "invalid_request_error" if status_code < 500 else "server_error"
        return OpenAIError(message, status_code=status_code, error_type=error_type, **kwargs)
    return cls(message, **kwargs)


def from_upstream_body(status_code: int, body: bytes) -> OpenAIError:
    """Re-raise an upstream OpenAI-style error with its own status, message and code."""
    try:
        err = json.loads(body).get("error") or {}
        if not isinstance(err, dict):  # some servers answer {"error": "text"}
            err = {"message": str(err)}
    except (ValueError, AttributeError):
        err = {"message": body.decode("utf-8", "replace")[:500] or f"upstream answered {status_code}"}
    message = str(err.get("message") or f"upstream answered {status_code}")
    param = err.get("param") if isinstance(err.get("param"), str) else None
    code = err.get("code")
    if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
        code = None  # vLLM puts the HTTP status there; OpenAI's codes are words or null
    if _VALIDATION_DUMP.match(message):
        message, param = _first_validation_error(message, param)
    return error_for_status(
        status_code if status_code >= 400 else 502,
        message,
        param=param.removeprefix("body.") if param else None,
        code=None if code is None else str(code),
    )


# vLLM answers its own request-validation failures with pydantic's whole error dump as the message.
_VALIDATION_DUMP = re.compile(r"^\d+ validation errors?\b")
_DICT_ERROR = re.compile(r"'loc': '(?P<loc>[^']*)', 'msg': (?P<q>['\"])(?P<msg>.*?)(?P=q)(?:, 'input'|, 'ctx'|\})")
_PYDANTIC_ERROR = re.compile(r"^(?P<loc>\S[^\n]*)\n\s+(?P<msg>[^\n]*?)(?: \[type=[^\n]*)?$", re.M)


def _first_validation_error(dump: str, param: str | None) -> tuple[str, str | None]:
    """One readable sentence from a pydantic error dump: where and what, no input values."""
    found = _DICT_ERROR.search(dump) or _PYDANTIC_ERROR.search(dump.split("\n", 1)[-1])
    if found is None:
        return "Invalid request.", param
    where = param or found.group("loc")
    # drop pydantic's union-member class names ("messages.0.ChatCompletionUserMessageParam.content")
    where = ".".join(part for part in where.removeprefix("body.").split(".") if not part[:1].isupper())
    return f"Invalid request at '{where}': {found.group('msg')}.", where


def error_response(exc: OpenAIError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)


def sse_error(exc: OpenAIError) -> bytes:
    """The SSE twin of :func:`error_response`, for errors after a stream has started."""
    return b"data: " + json.dumps(exc.to_dict()).encode() + b"\n\ndata: [DONE]\n\n"


def validation_error(exc: RequestValidationError) -> BadRequestError:
    return describe_validation_errors(list(exc.errors()))


def describe_validation_errors(errors: list[Any]) -> BadRequestError:
    """One clear 400 from pydantic's error list (FastAPI's or a model's own)."""
    if not errors:
        return BadRequestError("Invalid request body.")
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return BadRequestError(
            f"The request body is not valid JSON: {first.get('ctx', {}).get('error', 'parse error')}."
        )
    param = ".".join(loc) or None
    message = first.get("msg", "invalid value")
    where = f" at '{param}'" if param else ""
    more = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return BadRequestError(f"Invalid request{where}: {message}{more}.", param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    async def on_openai_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OpenAIError)
        if exc.status_code >= 500:
            logger.warning("request failed: %s", exc.message, extra={"status": exc.status_code})
        return error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc))

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(error_for_status(exc.status_code, str(exc.detail), headers=exc.headers))

    app.add_exception_handler(OpenAIError, on_openai_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
