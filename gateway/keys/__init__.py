"""Virtual API keys: stored hashed, checked through a TTL cache, managed by the admin API."""

from gateway.keys.records import ANONYMOUS, KeyCreate, KeyLimits, Principal
from gateway.keys.resolver import KeyResolver
from gateway.keys.store import KeyStore

__all__ = ["ANONYMOUS", "KeyCreate", "KeyLimits", "KeyResolver", "KeyStore", "Principal"]
