from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from gateway.feedback import FeedbackCaptureSettings
from gateway.moderation import ModerationPolicySettings
from gateway.retrieval import RetrievalSettings
from services.settings import ServiceSettings


class UpstreamConfig(BaseModel):
    """One vLLM OpenAI server and what the gateway adds to requests routed to it."""

    url: str = Field(description="Base URL of its OpenAI API, e.g. http://127.0.0.1:8001/v1.")
    api_key: SecretStr | None = None
    stop: list[str] = Field(
        default_factory=list, description="Stop strings added to every request (OpenChatKit: <human>)."
    )
    default_max_tokens: int | None = Field(
        default=None, ge=1, description="Tokens reserved for the answer when a request sets none."
    )
    tokenizer: str | None = Field(
        default=None, description="Local tokenizer directory for counting; None: ask the upstream's /tokenize."
    )
    chat_template: str | None = Field(
        default=None, description="Template file the upstream serves with, for local counting."
    )

    @property
    def root_url(self) -> str:
        """The server root (vLLM's /tokenize lives there, not under /v1)."""
        url = self.url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url


class GatewaySettings(ServiceSettings):
    """The public API. Env prefix ``GATEWAY_``; lists and objects are JSON."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    port: int = 8000
    api_keys: list[SecretStr] = Field(default_factory=list, description="Accepted bearer keys; empty: no auth.")
    upstreams: list[UpstreamConfig] = Field(default_factory=lambda: [UpstreamConfig(url="http://127.0.0.1:8001/v1")])
    request_timeout_s: float = Field(default=600.0, gt=0)
    model_refresh_s: float = Field(default=30.0, gt=0, description="How often upstream model lists are re-read.")
    template_overhead_tokens: int = Field(
        default=128, ge=0, description="Upper bound on the tokens a chat template adds, for the no-count fast path."
    )
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_prompts_per_request: int = Field(
        default=32, ge=1, description="/v1/completions: most prompts in one request's `prompt` list."
    )
    max_choices_per_request: int = Field(
        default=64, ge=1, description="/v1/completions: most generations per request (`n` x prompts)."
    )
    max_upload_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="Document uploads (/v1/documents).")
    feedback: FeedbackCaptureSettings = Field(default_factory=FeedbackCaptureSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    moderation: ModerationPolicySettings = Field(default_factory=ModerationPolicySettings)
