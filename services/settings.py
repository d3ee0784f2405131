"""Settings shared by every service.

Each service subclasses :class:`ServiceSettings` once, in its own ``config.py``, and
sets its own env prefix (``GATEWAY_``, ``CHAT_``, ``MODERATION_``, ...).

Paths kept under the data dir are computed one way everywhere: a field whose default is
``Field(default_factory=under_data_dir("models"))`` is ``<data_dir>/models`` unless set, so it
moves with ``<PREFIX>_DATA_DIR`` (and ``OPENCHATKIT_DATA_DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR_ENV = "OPENCHATKIT_DATA_DIR"


def default_data_dir() -> Path:
    """Where the stack keeps prepared models, indexes and databases: ``$OPENCHATKIT_DATA_DIR``,
    else ``~/.cache/openchatkit``."""
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "openchatkit"


class UnderDataDir:
    """The default factory of a setting kept under the data dir: ``<data_dir>/<parts>`` (a Path),
    or that path put into ``template`` (``"sqlite+aiosqlite:///{}"``: a str). Pydantic calls it
    with the fields validated so far, ``data_dir`` (a ServiceSettings field) among them."""

    def __init__(self, *parts: str, template: str | None = None) -> None:
        self.parts = parts
        self.template = template

    def __call__(self, data: dict[str, Any]) -> Any:
        path = Path(data["data_dir"]).joinpath(*self.parts)
        return path if self.template is None else self.template.format(path)

    def __str__(self) -> str:
        path = "/".join(("<data_dir>", *self.parts))
        return path if self.template is None else self.template.format(path)


def under_data_dir(*parts: str, template: str | None = None) -> UnderDataDir:
    """See :class:`UnderDataDir`."""
    return UnderDataDir(*parts, template=template)


class ServiceSettings(BaseSettings):
    """Fields every service has: where it listens and how it logs."""

    model_config = SettingsConfigDict(extra="ignore", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the service keeps its models, indexes and databases (default OPENCHATKIT_DATA_DIR).",
    )
    shutdown_grace_s: int = Field(
        default=10,
        ge=1,
        description="On SIGTERM: stop accepting connections, let requests in progress (streams included) "
        "finish for up to this long, then stop.",
    )
    internal_token: SecretStr | None = Field(
        default=None,
        description="Internal secret between the gateway and the services behind it. On a service: its API "
        "answers only 'Authorization: Bearer <token>' (health, ready and metrics stay open). On the gateway: "
        "sent to the moderation, retrieval and feedback services. Unset: open (development only).",
    )
