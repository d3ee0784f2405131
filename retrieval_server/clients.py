"""Outbound calls: live HTTP JSON sources, and the moderation service at ingest."""

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


class ModerationUnavailable(RuntimeError):
    """The moderation service could not label chunks; the ingest is refused (503), not stored unlabelled."""


class ChunkModerator:
    """Labels chunk texts with ``POST /v1/classify`` on the moderation service. Synchronous:
    it runs in the document store's worker thread, between chunking and writing."""

    def __init__(self, url: str, timeout_s: float, batch: int = 64) -> None:
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, trust_env=False)
        self._batch = batch

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        """One ``{"label", "flagged"}`` per text."""
        labels: list[dict[str, Any]] = []
        for start in range(0, len(texts), self._batch):
            batch = [text if text.strip() else "(empty)" for text in texts[start : start + self._batch]]
            try:
                response = self._client.post("/v1/classify", json={"input": batch})
            except httpx.HTTPError as exc:
                raise ModerationUnavailable(f"the moderation service is unreachable: {exc}") from exc
            if response.status_code != 200:
                raise ModerationUnavailable(f"the moderation service answered {response.status_code}")
            labels.extend({"label": r["label"], "flagged": bool(r["flagged"])} for r in response.json()["results"])
        return labels

    def close(self) -> None:
        self._client.close()
