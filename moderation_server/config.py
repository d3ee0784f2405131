from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.moderation_labels import LABELS, Label
from services.settings import ServiceSettings, under_data_dir


class ModerationSettings(ServiceSettings):
    """The moderation service. Env prefix ``MODERATION_``; lists are JSON."""

    model_config = SettingsConfigDict(env_prefix="MODERATION_", extra="ignore")

    port: int = 8002
    backend: Literal["classifier", "llm"] = Field(
        default="classifier", description="classifier: the CPU model; llm: GPT-JT-Moderation-6B on a vLLM server."
    )
    artifact_dir: Path = Field(
        default_factory=under_data_dir("moderation"),
        description="The trained classifier (from `openchatkit finetune moderation`).",
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
    runtime: Literal["auto", "onnx-int8", "torch"] = Field(
        default="auto",
        description="The classifier's runtime: onnx-int8 (the artifact's int8 encoder on ONNX Runtime, on which "
        "its decision rule was tuned), torch (fp32), or auto (onnx-int8 when it can).",
    )
    threads: int = Field(default=0, ge=0, description="CPU threads for the classifier (0: all this process may use).")
    score_cache_size: int = Field(
        default=8192,
        ge=0,
        description="Texts whose scores are kept (LRU): a conversation re-sends its history every turn, so a turn "
        "classifies only its new messages and the window. 0 turns it off.",
    )

    # Language policy (both backends): text the model cannot judge is flagged, not guessed.
    supported_languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="ISO 639-1 codes the model can judge (py3langid); the CPU classifier and GPT-JT are English.",
    )
    language_min_confidence: float = Field(
        default=0.7, ge=0, le=1, description="Below this, a Latin-script text counts as judgeable."
    )
    language_min_letters: int = Field(default=12, ge=1, description="Shorter texts are not language-checked.")
    flag_unsupported_languages: bool = Field(
        default=True, description="Set `flagged` on text in a language the model cannot judge."
    )
    decode_obfuscation: bool = Field(
        default=True, description="Also classify what ROT13 and base64 text decodes to; the worst verdict counts."
    )

    # backend "llm": GPT-JT-Moderation-6B (profile gpt-jt-moderation-6b) behind vLLM's OpenAI server.
    llm_url: str = Field(default="http://127.0.0.1:8005/v1", description="Base URL of the vLLM OpenAI API.")
    llm_model: str = Field(default="gpt-jt-moderation-6b", description="The served model name.")
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_temperature: float = Field(default=0.2, ge=0, le=2)
    llm_max_input_chars: int = Field(default=4000, ge=1, description="Longer texts are cut to fit the model's window.")

    def classifier_dir(self) -> Path:
        """The trained classifier's directory (``artifact_dir``)."""
        return self.artifact_dir

    def model_name(self) -> str:
        return self.llm_model if self.backend == "llm" else "openchatkit-moderation-minilm"
