"""OpenAI protocol models shared by the gateway and the services.

Requests are validated strictly on the fields OpenAI defines and keep unknown fields
(``extra="allow"``): vLLM's sampling extensions (``top_k``, ``min_p``, ...) and our own
(``retrieval``) ride next to them and are forwarded as they came.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="allow")


# OpenAI's content part types and vLLM's media extensions; anything else is a 400 here, not in vLLM.
PartType = Literal["text", "image_url", "input_audio", "file", "refusal", "audio_url", "video_url"]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: PartType
    text: str | None = None


class ChatMessage(OpenAIModel):
    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        if self.content is None and self.role in ("system", "developer", "user"):
            raise ValueError(f"a {self.role} message needs 'content'")
        return self

    def text(self) -> str:
        """The message's text, with list-of-parts content joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


Stop = str | list[str] | None


def _check_stop(value: Stop) -> Stop:
    if isinstance(value, list) and len(value) > 16:
        raise ValueError("at most 16 stop sequences are allowed")
    return value


class SamplingFields(OpenAIModel):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=16)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    stop: Stop = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1, description="A 64-bit integer, as vLLM takes.")
    user: str | None = None

    _stop = field_validator("stop")(_check_stop)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=20)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        return value
