"""Counting prompt tokens with the model's real tokenizer and chat template."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

import httpx

from services.errors import from_upstream_body
from services.http import map_httpx_errors

Messages = list[dict[str, Any]]


class TokenCounter(Protocol):
    max_chars_per_token: int
    """No token of the model covers more characters: ``len(text) / max_chars_per_token`` is a lower
    bound on its tokens, which lets the gateway refuse a hopeless text before counting it."""

    async def count_chat(self, model: str, messages: Messages) -> int:
        """Tokens of the rendered prompt, generation prompt included."""
        ...


class LocalTokenCounter:
    """The tokenizer files next to the served model, loaded in the gateway (fast, no hop)."""

    def __init__(self, tokenizer_dir: str, chat_template: str | None = None) -> None:
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        # Byte-level BPE spells each byte as one symbol, so a token's symbols bound its characters.
        self.max_chars_per_token = max(len(token) for token in self._tokenizer.get_vocab())
        if chat_template:
            self._tokenizer.chat_template = Path(chat_template).read_text()

    def count_sync(self, messages: Messages) -> int:
        ids = self._tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, return_dict=False
        )
        return len(ids)

    async def count_chat(self, model: str, messages: Messages) -> int:
        return await asyncio.to_thread(self.count_sync, messages)


class RemoteTokenCounter:
    """vLLM's own ``/tokenize``: exact for whatever the upstream serves, one hop per count."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        root_url: str,
        headers: dict[str, str] | None = None,
        max_chars_per_token: int = 64,
    ) -> None:
        self.max_chars_per_token = max_chars_per_token
        self._http = http
        self._url = root_url.rstrip("/") + "/tokenize"
        self._headers = headers or {}

    async def count_chat(self, model: str, messages: Messages) -> int:
        body = {"model": model, "messages": messages, "add_generation_prompt": True}
        with map_httpx_errors("the chat model"):
            response = await self._http.post(self._url, json=body, headers=self._headers)
        if response.status_code != 200:
            raise from_upstream_body(response.status_code, response.content)
        return int(response.json()["count"])
