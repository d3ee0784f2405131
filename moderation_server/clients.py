"""Outbound calls: vLLM's OpenAI completions endpoint for the ``llm`` backend."""

from __future__ import annotations

from typing import Any

import httpx

from services.errors import UpstreamError, from_upstream_body
from services.http import map_httpx_errors


class CompletionsClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str | None = None) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/completions"
        self._models_url = base_url.rstrip("/") + "/models"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        with map_httpx_errors("the moderation model"):
            response = await self._http.post(self._url, json=body, headers=self._headers)
        if response.status_code != 200:
            # Our caller's request was fine; the model server's refusal is our upstream's failure.
            cause = from_upstream_body(response.status_code, response.content)
            raise UpstreamError(
                f"The moderation model answered {response.status_code}: {cause.message}", code="upstream_error"
            )
        try:
            return dict(response.json())
        except ValueError as exc:
            raise UpstreamError("The moderation model answered with invalid JSON.") from exc

    async def serves(self, model: str) -> bool:
        with map_httpx_errors("the moderation model"):
            response = await self._http.get(self._models_url, headers=self._headers)
        if response.status_code != 200:
            return False
        return any(card.get("id") == model for card in response.json().get("data", []))
