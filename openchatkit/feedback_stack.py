"""The feedback pipeline's part of ``openchatkit run``: Redis (the one at REDIS_URL when it
answers, else a private redis-server as a supervised process), the feedback API and its
worker, and the settings the gateway needs to capture turns and proxy feedback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from openchatkit.local_redis import free_port, redis_answers, redis_server_argv
from openchatkit.secrets import StackSecrets
from openchatkit.supervisor import ServiceSpec, python_module


class Stack(Protocol):  # what we need of openchatkit.stack.StackSettings
    @property
    def host(self) -> str: ...
    @property
    def data_dir(self) -> os.PathLike[str]: ...
    @property
    def feedback_port(self) -> int: ...
    @property
    def log_json(self) -> bool: ...

    def url(self, port: int) -> str: ...

    def secrets(self) -> StackSecrets: ...


def stack_redis(stack: Stack) -> tuple[str, ServiceSpec | None]:
    """The Redis URL for the stack, and the spec of a private server when it needs one
    (password-protected, dangerous commands disabled; the URL carries the password)."""
    url = os.environ.get("REDIS_URL")
    if url and redis_answers(url):
        return url, None
    port = free_port()
    password = stack.secrets().redis_password
    spec = ServiceSpec(name="redis", argv=redis_server_argv(port, Path(stack.data_dir) / "redis", password=password))
    return f"redis://:{password}@127.0.0.1:{port}/0", spec


def feedback_specs(stack: Stack, redis_url: str, redis_spec: ServiceSpec | None) -> list[ServiceSpec]:
    env = {
        "FEEDBACK_HOST": stack.host,
        "FEEDBACK_PORT": str(stack.feedback_port),
        "FEEDBACK_REDIS_URL": redis_url,
        "FEEDBACK_DATA_DIR": os.fspath(stack.data_dir),  # the SQLite store, unless FEEDBACK_DATABASE_URL says otherwise
        "FEEDBACK_LOG_JSON": str(stack.log_json).lower(),
        "FEEDBACK_INTERNAL_TOKEN": stack.secrets().internal_token,
    }
    after = [redis_spec.name] if redis_spec else []
    specs = [] if redis_spec is None else [redis_spec]
    specs.append(ServiceSpec(
        name="feedback", argv=python_module("feedback_server"), env=env,
        ready_url=stack.url(stack.feedback_port) + "/ready", after=after,
    ))  # fmt: skip
    specs.append(
        ServiceSpec(name="fb-worker", argv=python_module("feedback_server.worker"), env=env, after=["feedback"])
    )
    return specs


def gateway_feedback_env(stack: Stack, redis_url: str) -> dict[str, str]:
    return {
        "GATEWAY_FEEDBACK__REDIS_URL": redis_url,
        "GATEWAY_LIMITS__REDIS_URL": redis_url,
        "GATEWAY_FEEDBACK__SERVICE_URL": stack.url(stack.feedback_port),
    }
