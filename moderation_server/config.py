from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from moderation_server.labels import LABELS, Label
from services.settings import ServiceSettings


class ModerationSettings(ServiceSettings):
    """The moderation service. Env prefix ``MODERATION_``; lists are JSON."""

    model_config = SettingsConfigDict(env_prefix="MODERATION_", extra="ignore")

    port: int = 8002
    backend: Literal["classifier", "llm"] = Field(
        default="classifier", description="classifier: the CPU model; llm: GPT-JT-Moderation-6B on a vLLM server."
    )
    artifact_dir: Path | None = Field(
        default=None,
        description="The trained classifier (default: <data_dir>/moderation, from `openchatkit finetune moderation`).",
    )
    train_if_missing: bool = Field(
        default=True, description="Train the classifier at start-up when no current artifact exists."
    )
    flagged_labels: list[Label] = Field(
        default_factory=lambda: list(LABELS[1:]), description="Labels that set `flagged` (default: all but casual)."
    )
    max_chars: int = Field(default=20_000, ge=1, description="Longest text accepted, in characters.")
    max_inputs: int = Field(default=256, ge=1, description="Most texts in one request.")
    max_request_chars: int = Field(
        default=200_000,
        ge=1,
        description="Most characters in one request, all texts together (a 2048-token chat window is ~10k).",
    )
    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    batch_size: int = Field(default=64, ge=1, description="Texts per model batch.")
    batch_max_chars: int = Field(
        default=16_000, ge=1, description="Characters per model batch: a long request yields to others between batches."
    )
    max_queued_texts: int = Field(
        default=4096, ge=1, description="Texts waiting for the model at once; past it requests get 503 overloaded."
    )
    batch_wait_ms: float = Field(
        default=0.0, ge=0, description="Extra wait to collect concurrent requests (0: batch what queued while busy)."
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="CPU threads for the classifier (default: torch's)."
    )

    # backend "llm": GPT-JT-Moderation-6B (profile gpt-jt-moderation-6b) behind vLLM's OpenAI server.
    llm_url: str = Field(default="http://127.0.0.1:8005/v1", description="Base URL of the vLLM OpenAI API.")
    llm_model: str = Field(default="gpt-jt-moderation-6b", description="The served model name.")
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_temperature: float = Field(default=0.2, ge=0, le=2)
    llm_max_input_chars: int = Field(default=4000, ge=1, description="Longer texts are cut to fit the model's window.")

    def classifier_dir(self) -> Path:
        return self.artifact_dir or self.data_dir / "moderation"

    def model_name(self) -> str:
        return self.llm_model if self.backend == "llm" else "openchatkit-moderation-minilm"
