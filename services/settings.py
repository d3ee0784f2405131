"""Settings shared by every service.

Each service subclasses :class:`ServiceSettings` once, in its own ``config.py``, and
sets its own env prefix (``GATEWAY_``, ``CHAT_``, ``MODERATION_``, ...).
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Where the stack keeps prepared models, indexes and databases."""
    return Path.home() / ".cache" / "openchatkit"


class ServiceSettings(BaseSettings):
    """Fields every service has: where it listens and how it logs."""

    model_config = SettingsConfigDict(extra="ignore", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True
    data_dir: Path = default_data_dir()
