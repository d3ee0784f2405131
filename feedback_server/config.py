"""Feedback service and worker settings. Env prefix ``FEEDBACK_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.settings import ServiceSettings, under_data_dir
from services.turn_events import DEFAULT_EVENTS_STREAM

SQLITE_STORE = under_data_dir("feedback.db", template="sqlite+aiosqlite:///{}")


def sqlite_url(data_dir: Path) -> str:
    """The SQLite store under ``data_dir`` (the gateway's key store shares its file)."""
    return str(SQLITE_STORE({"data_dir": data_dir}))


class FeedbackSettings(ServiceSettings):
    """One settings class for the API and the worker (they share the stream and the store)."""

    model_config = SettingsConfigDict(env_prefix="FEEDBACK_", extra="ignore")

    port: int = 8004
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_s: float = Field(default=2.0, gt=0, description="Socket timeout of every Redis call.")
    stream: str = Field(default=DEFAULT_EVENTS_STREAM, description="The stream turns and feedback are queued on.")
    dead_letter_stream: str | None = Field(default=None, description="Default: '<stream>:dead'.")
    group: str = Field(default="feedback-store", description="The worker consumer group.")
    database_url: str = Field(default_factory=SQLITE_STORE, description="SQLAlchemy async URL of the store.")
    migrate_on_start: bool = True

    # API
    max_text_chars: int = Field(default=16_000, ge=1, description="Longest ideal_response or comment accepted.")
    max_request_bytes: int = Field(default=256 * 1024, ge=1024)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60, description="How long an Idempotency-Key is remembered.")
    status_ttl_s: int = Field(
        default=3600,
        ge=60,
        description="How long a queued feedback id can be looked up in Redis.",
    )
    access_log: bool = Field(default=True, description="One log line per request (off for benchmarks).")
    workers: int = Field(default=1, ge=1, le=32, description="uvicorn worker processes for the API.")

    # Worker
    batch_size: int = Field(default=256, ge=1, le=10_000)
    block_ms: int = Field(default=1000, ge=1, description="How long XREADGROUP waits for new entries.")
    claim_idle_ms: int = Field(default=30_000, ge=10, description="Pending entries idle this long are reclaimed.")
    claim_interval_s: float = Field(default=5.0, gt=0, description="How often a worker looks for stuck entries.")
    max_deliveries: int = Field(default=5, ge=1, description="Deliveries before an entry is dead-lettered.")
    trim_interval_s: float = Field(default=10.0, gt=0, description="How often acknowledged entries are trimmed.")
    retry_max_s: float = Field(default=10.0, gt=0, description="Longest wait between store retries.")
    consumer: str | None = Field(default=None, description="Consumer name; default host-pid-random.")

    @property
    def dead_letters(self) -> str:
        return self.dead_letter_stream or f"{self.stream}:dead"
