"""Per-key rate limits, token reservations and budgets in Redis."""

from gateway.limits.limiter import RateLimiter
from gateway.limits.ticket import Ticket

__all__ = ["RateLimiter", "Ticket"]
