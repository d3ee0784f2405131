"""Counting prompt tokens with the model's real tokenizer and chat template."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

import httpx

from services.errors import from_upstream_body

Messages = list[dict[str, Any]]


class TokenCounter(Protocol):
    max_chars_per_token: int
    """No token of the model covers more characters: ``len(text) / max_chars_per_token`` is a lower
    bound on its tokens, which lets the gateway refuse a hopeless text before counting it."""

    async def count_chat(self, model: str, messages: Messages) -> int:
        """Tokens of the rendered prompt, generation prompt included."""
        ...


_MAX_ROLE_SEQUENCES = 4096
# Conversations the additive count must get exactly right before it is used (ordinary
# text: a template that trims or joins text to its own pieces fails them).
_PROBES: list[Messages] = [
    [{"role": "user", "content": "Hello there, how are you?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2? Name a river."},
        {"role": "assistant", "content": "4. The Rhône, 813 km."},
        {"role": "user", "content": "Und auf Deutsch? 日本語でも。"},
    ],
]


class LocalTokenCounter:
    """The tokenizer files next to the served model, loaded in the gateway (fast, no hop)."""

    def __init__(self, tokenizer_dir: str, chat_template: str | None = None) -> None:
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        # Byte-level BPE spells each byte as one symbol, so a token's symbols bound its characters.
        self.max_chars_per_token = max(len(token) for token in self._tokenizer.get_vocab())
        if chat_template:
            self._tokenizer.chat_template = Path(chat_template).read_text()
        self._fast = getattr(self._tokenizer, "backend_tokenizer", None)  # tokenizers.Tokenizer
        self._overheads: dict[tuple[str, ...], int] = {}
        self.additive = self._fast is not None and all(
            self._additive_count(probe) == self.count_sync(probe) for probe in _PROBES
        )
        """Whether the template puts each message's text between fixed pieces, so a prompt's
        tokens are its texts' tokens plus the template's own (checked on probe conversations)."""

    def count_sync(self, messages: Messages) -> int:
        """Tokens of the rendered prompt: the template rendered to text, then encoded by the
        Rust tokenizer without special tokens (what ``apply_chat_template(tokenize=True)``
        does, without building a BatchEncoding on each call)."""
        text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if self._fast is not None:
            return len(self._fast.encode(str(text), add_special_tokens=False).ids)
        return len(self._tokenizer.encode(str(text), add_special_tokens=False))

    def count_reserve(self, messages: Messages) -> int:
        """Tokens of the rendered prompt, for a rate-limit reservation: with an additive
        template (:attr:`additive`), each message's text encoded on its own plus the
        template's tokens for that sequence of roles (rendered once per sequence, then
        cached) -- the same number as :meth:`count_sync` for ordinary text without rendering
        the template on every request (a text that starts with several spaces can come out
        a token high, as the tokenizer joins whitespace across the boundary; the reservation
        is corrected from the answer's usage); otherwise :meth:`count_sync`. Messages with fields other than
        ``role`` and ``content``, or with content parts, are counted by :meth:`count_sync`."""
        if self.additive:
            count = self._additive_count(messages)
            if count is not None:
                return count
        return self.count_sync(messages)

    def _additive_count(self, messages: Messages) -> int | None:
        assert self._fast is not None
        roles: list[str] = []
        text_tokens = 0
        for message in messages:
            content = message.get("content")
            if not isinstance(content, str) or len(message) > 2 or not isinstance(message.get("role"), str):
                return None
            roles.append(message["role"])
            if content:
                text_tokens += len(self._fast.encode(content, add_special_tokens=False).ids)
        key = tuple(roles)
        overhead = self._overheads.get(key)
        if overhead is None:
            overhead = self.count_sync([{"role": role, "content": ""} for role in key])
            if len(self._overheads) < _MAX_ROLE_SEQUENCES:
                self._overheads[key] = overhead
        return overhead + text_tokens

    async def count_chat(self, model: str, messages: Messages) -> int:
        return await asyncio.to_thread(self.count_sync, messages)

    async def count_text(self, model: str, text: str) -> int:
        """Tokens of a raw prompt (``/v1/completions``)."""
        return await asyncio.to_thread(lambda: len(self._tokenizer.encode(text)))


class RemoteTokenCounter:
    """vLLM's own ``/tokenize``: exact for whatever the upstream serves, one hop per count.
    ``http`` is the gateway's shared client (gateway/clients.py): transport failures arrive
    as our errors, naming the chat model."""

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
        response = await self._http.post(self._url, json=body, headers=self._headers)
        if response.status_code != 200:
            raise from_upstream_body(response.status_code, response.content)
        return int(response.json()["count"])

    async def count_text(self, model: str, text: str) -> int:
        response = await self._http.post(self._url, json={"model": model, "prompt": text}, headers=self._headers)
        if response.status_code != 200:
            raise from_upstream_body(response.status_code, response.content)
        return int(response.json()["count"])
