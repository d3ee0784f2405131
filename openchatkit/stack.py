"""The whole stack on one machine, as ``openchatkit run`` starts it.

Each service gets its settings through its own env prefix; this module only decides
ports, the data directory and how the services find each other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from chat_server.config import ChatServerSettings
from chat_server.launch import startup_phase
from chat_server.prepare import model_dir
from chat_server.profiles import GGUFSource, get_profile
from feedback_server.config import sqlite_url
from openchatkit.feedback_stack import feedback_specs, gateway_feedback_env, stack_redis
from openchatkit.secrets import StackSecrets, save_endpoints
from openchatkit.supervisor import ServiceSpec, python_module
from services.settings import default_data_dir


class StackSettings(BaseSettings):
    """``openchatkit run``. Env prefix ``OPENCHATKIT_``."""

    model_config = SettingsConfigDict(env_prefix="OPENCHATKIT_", extra="ignore")

    host: str = "127.0.0.1"
    data_dir: Path = default_data_dir()
    api_key: str = Field(
        default="sk-local", description="The bootstrap key clients send (static, unlimited); make run prints it."
    )
    gateway_port: int = 8000
    chat_port: int = 8001
    moderation_port: int = 8002
    retrieval_port: int = 8003
    feedback_port: int = 8004
    log_json: bool = False

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def chat(self) -> ChatServerSettings:
        """The chat model server's settings (``CHAT_*``), its model cache under this stack's data dir."""
        return ChatServerSettings(data_dir=self.data_dir)

    def secrets(self) -> StackSecrets:
        """Master key, internal token, Redis password: made once, kept in the data dir."""
        return StackSecrets.load_or_create(self.data_dir)


def chat_spec(stack: StackSettings) -> ServiceSpec:
    chat = stack.chat()
    return ServiceSpec(
        name="chat",
        argv=python_module("chat_server"),
        env={
            "CHAT_HOST": stack.host,
            "CHAT_PORT": str(stack.chat_port),
            "CHAT_DATA_DIR": str(stack.data_dir),
            "CHAT_CACHE_DIR": str(chat.cache_dir),
            "CHAT_LOG_JSON": str(stack.log_json).lower(),
            "CHAT_INTERNAL_TOKEN": stack.secrets().internal_token,
        },
        ready_url=stack.url(stack.chat_port) + "/health",
        startup_phase=startup_phase,
    )


def gateway_upstream(stack: StackSettings) -> dict[str, object]:
    """How the gateway reaches the chat model, with the profile's stop strings and tokenizer."""
    chat = stack.chat()
    profile = get_profile(chat.profile)
    upstream: dict[str, object] = {
        "url": stack.url(stack.chat_port) + "/v1",
        "api_key": stack.secrets().internal_token,
        "stop": profile.stop,
        "default_max_tokens": profile.sampling_defaults.get("max_tokens"),
    }
    local_dir = chat.model_path or (
        str(model_dir(profile, chat.cache_dir)) if isinstance(profile.source, GGUFSource) else None
    )
    if local_dir and Path(local_dir).is_dir():
        upstream["tokenizer"] = local_dir
        template = profile.chat_template_path()
        if template is not None:
            upstream["chat_template"] = str(template)
    return upstream


def service_spec(stack: StackSettings, name: str, module: str, prefix: str, port: int, **extra: str) -> ServiceSpec:
    """A service of ours: ``python -m module`` configured through its env prefix."""
    return ServiceSpec(
        name=name,
        argv=python_module(module),
        env={
            f"{prefix}_HOST": stack.host,
            f"{prefix}_PORT": str(port),
            f"{prefix}_LOG_JSON": str(stack.log_json).lower(),
            f"{prefix}_INTERNAL_TOKEN": stack.secrets().internal_token,
            **{f"{prefix}_{key.upper()}": value for key, value in extra.items()},
        },
        ready_url=stack.url(port) + "/ready",
    )


def retrieval_spec(stack: StackSettings) -> ServiceSpec:
    """Chunks are labelled by the moderation service at ingest, so it starts first."""
    spec = service_spec(
        stack,
        "retrieval",
        "retrieval_server",
        "RETRIEVAL",
        stack.retrieval_port,
        data_dir=str(stack.data_dir),
        moderation_url=stack.url(stack.moderation_port),
    )
    spec.after = [*spec.after, "moderation"]
    return spec


def moderation_spec(stack: StackSettings) -> ServiceSpec:
    """The CPU classifier; it trains itself at start-up if `openchatkit finetune moderation` has not run."""
    return service_spec(
        stack, "moderation", "moderation_server", "MODERATION", stack.moderation_port, data_dir=str(stack.data_dir)
    )


def gateway_spec(stack: StackSettings) -> ServiceSpec:
    spec = service_spec(stack, "gateway", "gateway", "GATEWAY", stack.gateway_port)
    spec.env.update(
        {
            "GATEWAY_API_KEYS": json.dumps([stack.api_key]),
            "GATEWAY_MASTER_KEY": stack.secrets().master_key,
            "GATEWAY_KEYS__DATABASE_URL": os.environ.get("FEEDBACK_DATABASE_URL") or sqlite_url(Path(stack.data_dir)),
            "GATEWAY_UPSTREAMS": json.dumps([gateway_upstream(stack)]),
            "GATEWAY_RETRIEVAL__URL": stack.url(stack.retrieval_port),
            "GATEWAY_MODERATION__ENABLED": "true",
            "GATEWAY_MODERATION__URL": stack.url(stack.moderation_port),
        }
    )
    spec.after = ["chat", "retrieval", "moderation"]
    return spec


def build_stack(stack: StackSettings) -> list[ServiceSpec]:
    redis_url, redis_spec = stack_redis(stack)
    save_endpoints(stack.data_dir, redis_url=redis_url, chat_url=stack.url(stack.chat_port))  # for `adapters`, `learn`
    gateway = gateway_spec(stack)
    gateway.env.update(gateway_feedback_env(stack, redis_url))
    feedback = feedback_specs(stack, redis_url, redis_spec)
    return [chat_spec(stack), moderation_spec(stack), retrieval_spec(stack), *feedback, gateway]
