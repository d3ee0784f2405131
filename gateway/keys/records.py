"""What a key is: the plaintext format, its hash, the admin API's shapes, and the
``Principal`` a request runs as once its key has been checked."""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

VIRTUAL_KEY_PREFIX = "sk-ock-"
ANONYMOUS = "anonymous"


def new_plaintext_key() -> str:
    """``sk-ock-`` + 256 random bits (43 URL-safe characters)."""
    return VIRTUAL_KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_key(plaintext: str) -> str:
    """Hex sha256; keys carry 256 random bits, so no salt or slow hash is needed."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def key_hint(plaintext: str) -> str:
    return f"{VIRTUAL_KEY_PREFIX}...{plaintext[-4:]}"


class BudgetPeriod(enum.StrEnum):
    DAY = "day"
    MONTH = "month"


class KeyLimits(BaseModel):
    """Per-key limits; None means no limit of that kind."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = Field(
        default=None,
        description="Models and adapter names the key may use (fnmatch patterns like 'support-*'); None: all.",
    )
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens (prompt + completion) per minute.")
    max_parallel: int | None = Field(default=None, ge=1, description="Requests in flight at once.")
    budget_tokens: int | None = Field(default=None, ge=1, description="Tokens per budget period.")
    budget_period: BudgetPeriod | None = Field(default=None, description="'day' or 'month' (UTC).")


class KeyCreate(KeyLimits):
    """``POST /admin/keys``."""

    alias: str | None = Field(default=None, max_length=128)
    owner: str | None = Field(default=None, max_length=128, description="Owner or team label.")
    expires_at: datetime | None = Field(default=None, description="After this instant the key answers 401.")


class KeyUpdate(BaseModel):
    """``PATCH /admin/keys/{id}``: only the fields sent change (send null to clear a limit)."""

    model_config = ConfigDict(extra="forbid")

    alias: str | None = Field(default=None, max_length=128)
    owner: str | None = Field(default=None, max_length=128)
    models: list[str] | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_parallel: int | None = Field(default=None, ge=1)
    budget_tokens: int | None = Field(default=None, ge=1)
    budget_period: BudgetPeriod | None = None
    expires_at: datetime | None = None


class KeyRotate(BaseModel):
    """``POST /admin/keys/{id}/rotate``."""

    model_config = ConfigDict(extra="forbid")

    grace_period_s: int = Field(default=0, ge=0, le=30 * 86400, description="How long the old key keeps working.")


@dataclass(frozen=True)
class Principal:
    """Who a request runs as: a key id (never the key) and what the key may do."""

    key_id: str
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_tokens: int | None = None
    budget_period: str | None = None
    expires_at: float | None = None
    """Unix time; checked on every request, cached or not."""

    @property
    def limited(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_parallel or (self.budget_tokens and self.budget_period))

    def may_use(self, model: str) -> bool:
        if self.models is None:
            return True
        return any(model == pattern or fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    @classmethod
    def from_row(cls, row: Any) -> Principal:
        expires = row.expires_at
        return cls(
            key_id=row.id,
            models=tuple(row.models) if row.models is not None else None,
            rpm=row.rpm,
            tpm=row.tpm,
            max_parallel=row.max_parallel,
            budget_tokens=row.budget_tokens,
            budget_period=row.budget_period,
            expires_at=_aware(expires).timestamp() if expires is not None else None,
        )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def key_json(row: Any) -> dict[str, Any]:
    """A key as the admin API shows it: never the key or its hash."""

    def when(value: datetime | None) -> int | None:
        return int(_aware(value).timestamp()) if value is not None else None

    return {
        "id": row.id,
        "object": "api_key",
        "hint": row.hint,
        "alias": row.alias,
        "owner": row.owner,
        "models": row.models,
        "rpm": row.rpm,
        "tpm": row.tpm,
        "max_parallel": row.max_parallel,
        "budget_tokens": row.budget_tokens,
        "budget_period": row.budget_period,
        "expires_at": when(row.expires_at),
        "revoked": bool(row.revoked),
        "previous_key_valid_until": when(row.previous_valid_until),
        "created_at": when(row.created_at),
        "updated_at": when(row.updated_at),
        "last_used_at": when(row.last_used_at),
    }
