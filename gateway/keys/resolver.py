"""Checking a request's key: static keys from settings (the bootstrap key of ``make run``),
then virtual keys from the store through a short in-process TTL cache.

A cached key answers without touching the store, so a revocation made through another
gateway replica takes effect within ``cache_ttl_s``; the replica that revokes drops its
cache at once. Expiry is checked on every request, cached or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.keys.records import ANONYMOUS, VIRTUAL_KEY_PREFIX, Principal, hash_key
from gateway.keys.store import KeyStore
from services.errors import AuthenticationError, ServiceUnavailableError

logger = logging.getLogger(__name__)

MAX_CACHED = 50_000


@dataclass(frozen=True)
class _Cached:
    principal: Principal | None  # None: no such key
    revoked: bool
    grace_until: float | None  # the hash is a rotated-out key valid until then
    fresh_until: float  # monotonic


def static_key_id(key: str) -> str:
    return "static-" + hashlib.sha256(key.encode()).hexdigest()[:12]


class KeyResolver:
    def __init__(
        self,
        static_keys: list[str],
        open_store: Callable[[], Awaitable[KeyStore]] | None,
        cache_ttl_s: float,
        last_used_interval_s: float = 60.0,
    ) -> None:
        self._static = [(key.encode(), Principal(static_key_id(key))) for key in static_keys]
        self._open_store = open_store
        self._store: KeyStore | None = None
        self._store_lock = asyncio.Lock()
        self._ttl = cache_ttl_s
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Future[_Cached]] = {}
        self._used: set[str] = set()
        self._last_used_interval = last_used_interval_s
        self._toucher: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._static) or self._open_store is not None

    async def store(self) -> KeyStore:
        if self._store is None:
            if self._open_store is None:
                raise ServiceUnavailableError("Virtual keys are not enabled on this gateway.", code="keys_disabled")
            async with self._store_lock:
                if self._store is None:
                    self._store = await self._open_store()
        return self._store

    def forget(self) -> None:
        """Drop every cached lookup (after this replica changed a key)."""
        self._cache.clear()

    async def authenticate(self, key: bytes | None) -> Principal:
        """The principal for a bearer key; AuthenticationError (401) otherwise."""
        if not self.enabled:
            return Principal(ANONYMOUS)
        if key is None:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
        for known, principal in self._static:
            if secrets.compare_digest(key, known):
                return principal
        if self._open_store is None or not key.startswith(VIRTUAL_KEY_PREFIX.encode()):
            raise _invalid()
        cached = await self._lookup(hash_key(key.decode("latin-1")))
        now = time.time()
        if cached.principal is None or (cached.grace_until is not None and cached.grace_until <= now):
            raise _invalid()
        if cached.revoked:
            raise AuthenticationError("This API key has been revoked.", code="key_revoked")
        if cached.principal.expires_at is not None and cached.principal.expires_at <= now:
            raise AuthenticationError("This API key has expired.", code="key_expired")
        self._note_use(cached.principal.key_id)
        return cached.principal

    async def _lookup(self, key_hash: str) -> _Cached:
        cached = self._cache.get(key_hash)
        if cached is not None and cached.fresh_until > time.monotonic():
            return cached
        pending = self._inflight.get(key_hash)
        if pending is not None:  # one store query for a burst of requests with the same key
            return await asyncio.shield(pending)
        future: asyncio.Future[_Cached] = asyncio.get_running_loop().create_future()
        self._inflight[key_hash] = future
        try:
            entry = await self._load(key_hash)
            future.set_result(entry)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key_hash, None)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[key_hash] = entry
        return entry

    async def _load(self, key_hash: str) -> _Cached:
        try:
            store = await self.store()
            found = await store.find(key_hash)
        except Exception as exc:
            logger.warning("key store unavailable: %s", type(exc).__name__)
            raise ServiceUnavailableError(
                "The key store is unavailable; try again shortly.", code="key_store_unavailable"
            ) from exc
        fresh_until = time.monotonic() + self._ttl
        if found is None:
            return _Cached(None, False, None, fresh_until)
        row, is_previous = found
        grace_until: float | None = None
        if is_previous:
            until = row.previous_valid_until
            grace_until = (until if until.tzinfo else until.replace(tzinfo=UTC)).timestamp() if until else 0.0
        return _Cached(Principal.from_row(row), bool(row.revoked), grace_until, fresh_until)

    def _note_use(self, key_id: str) -> None:
        self._used.add(key_id)
        if self._toucher is None:
            self._toucher = asyncio.create_task(self._touch_forever(), name="key-last-used")

    async def _touch_forever(self) -> None:
        while True:
            await asyncio.sleep(self._last_used_interval)
            await self.flush_last_used()

    async def flush_last_used(self) -> None:
        used, self._used = sorted(self._used), set()
        if not used or self._store is None:
            return
        try:
            await self._store.touch(used, datetime.now(UTC))
        except Exception as exc:  # last-used times are informational
            logger.warning("could not record key use: %s", exc)

    async def aclose(self) -> None:
        if self._toucher is not None:
            self._toucher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._toucher
        if self._store is not None:
            await self.flush_last_used()
            await self._store.close()


def _invalid() -> AuthenticationError:
    return AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
