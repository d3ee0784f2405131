"""Outbound calls: live HTTP JSON sources."""

from __future__ import annotations

from typing import Any

import httpx


class SourceError(RuntimeError):
    """A live source failed; ``status`` says how (timeout, unavailable, error)."""

    def __init__(self, message: str, status: str = "error") -> None:
        super().__init__(message)
        self.status = status


async def fetch_json(http: httpx.AsyncClient, url: str, headers: dict[str, str], timeout_s: float) -> Any:
    try:
        response = await http.get(url, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException as exc:
        raise SourceError(f"no answer within {timeout_s:g}s", "timeout") from exc
    except httpx.TransportError as exc:
        raise SourceError(f"unreachable: {exc}", "unavailable") from exc
    if response.status_code != 200:
        raise SourceError(f"answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise SourceError("answered something that is not JSON") from exc
