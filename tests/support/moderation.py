"""The moderation service for tests: the trained classifier (built once, reused while
current) and real ``python -m moderation_server`` processes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import openai

from moderation_server.config import ModerationSettings
from moderation_server.training import ensure_artifact
from tests.support.processes import ServiceProcess, free_port


def trained_classifier_dir() -> Path:
    """The default artifact (what `openchatkit finetune moderation` writes); trains only if stale."""
    return ensure_artifact(ModerationSettings().classifier_dir()).directory


@dataclass
class ModerationService:
    url: str
    process: ServiceProcess

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)


def start_moderation(log_dir: Path, env: dict[str, str]) -> ModerationService:
    port = free_port()
    process = ServiceProcess.module(
        "moderation",
        "moderation_server",
        # The LLM backend's upstream gets time enough for a busy machine (speed is for benchmarks).
        {"MODERATION_PORT": str(port), "MODERATION_LOG_JSON": "true", "MODERATION_LLM_TIMEOUT_S": "600", **env},
        log_dir,
    ).start()
    service = ModerationService(f"http://127.0.0.1:{port}", process)
    try:
        process.wait_http(service.url + "/ready", timeout=180)
    except Exception:
        process.stop()
        raise
    return service
