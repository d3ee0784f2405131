"""The shared kit every openchatkit service imports: settings, logging, errors,
OpenAI protocol models, the HTTP client lifecycle, health and metrics."""

from services.app import create_service_app
from services.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    NotFoundError,
    OpenAIError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from services.http import build_http_client, map_httpx_errors
from services.logging import configure_logging
from services.settings import ServiceSettings

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ContextLengthError",
    "NotFoundError",
    "OpenAIError",
    "ServiceSettings",
    "ServiceUnavailableError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "build_http_client",
    "configure_logging",
    "create_service_app",
    "map_httpx_errors",
]
