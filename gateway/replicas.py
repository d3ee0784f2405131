"""Replicas of a model: which one gets a request, which ones are ejected, and how many
requests each may hold.

- :class:`Replica`: one upstream server (a vLLM OpenAI server), with this gateway's
  in-flight count, the ``vllm:num_requests_waiting`` it last reported and a
  :class:`CircuitBreaker`.
- :class:`CircuitBreaker`: closed (in service) -> open after ``eject_after_failures``
  consecutive failures (connect error, 5xx, timeout), for a back-off that doubles on each
  ejection in a row (``ejection_base_s`` .. ``ejection_max_s``) -> half-open when it has
  passed: one probe (``GET /v1/models``) decides between closed and open again.
- :class:`ReplicaRouter`: picks a replica per request by policy (``least_busy``,
  ``round_robin``, ``session``) among those in service and under
  ``max_in_flight_per_replica``; when all are full a request waits in a bounded queue
  (``max_waiting`` requests, ``queue_timeout_s``), beyond which it gets 429
  ``engine_overloaded``. No replica in service: 503 ``model_unavailable`` at once.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import itertools
import logging
import time
from collections.abc import Collection, Sequence

from prometheus_client import Counter, Gauge

from gateway.config import RoutingSettings, UpstreamConfig
from services.errors import RateLimitError, ServiceUnavailableError

logger = logging.getLogger(__name__)

IN_FLIGHT = Gauge(
    "openchatkit_gateway_replica_in_flight",
    "Generations this gateway has open per replica.",
    ["replica"],
    multiprocess_mode="livesum",
)
EJECTIONS = Counter(
    "openchatkit_gateway_replica_ejections_total", "Times a replica was taken out of service.", ["replica"]
)
RETRIES = Counter(
    "openchatkit_gateway_replica_retries_total",
    "Requests retried on another replica after this one failed.",
    ["replica"],
)
ROUTED = Counter("openchatkit_gateway_replica_requests_total", "Routing decisions per replica.", ["replica", "policy"])
OVERLOADED = Counter("openchatkit_gateway_overloaded_total", "Requests refused because every replica was full.")
WAITING = Gauge(
    "openchatkit_gateway_waiting_requests", "Requests queued for a free replica slot.", multiprocess_mode="livesum"
)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, settings: RoutingSettings) -> None:
        self._settings = settings
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.ejections_in_a_row = 0
        self.open_until = 0.0

    @property
    def in_service(self) -> bool:
        return self.state is BreakerState.CLOSED

    def probe_due(self, now: float) -> bool:
        """An open breaker whose back-off has passed goes half-open: time for one probe."""
        if self.state is BreakerState.OPEN and now >= self.open_until:
            self.state = BreakerState.HALF_OPEN
            return True
        return False

    def success(self) -> bool:
        """Returns True when this closed an ejected breaker (the replica rejoined)."""
        rejoined = self.state is not BreakerState.CLOSED
        self.state, self.failures, self.ejections_in_a_row = BreakerState.CLOSED, 0, 0
        return rejoined

    def failure(self) -> bool:
        """Returns True when this failure ejected the replica."""
        self.failures += 1
        if self.state is BreakerState.CLOSED and self.failures < self._settings.eject_after_failures:
            return False
        if self.state is BreakerState.OPEN:
            return False  # already out (late failures of requests sent before the ejection)
        backoff = self._settings.ejection_base_s * 2**self.ejections_in_a_row
        self.ejections_in_a_row += 1
        self.state = BreakerState.OPEN
        self.open_until = time.monotonic() + min(backoff, self._settings.ejection_max_s)
        return True


class Replica:
    """One upstream server of a model. ``key`` is its URL (unique in the registry)."""

    def __init__(self, config: UpstreamConfig, settings: RoutingSettings) -> None:
        self.config = config
        self.key = config.url.rstrip("/")
        self.breaker = CircuitBreaker(settings)
        self.in_flight = 0
        self.waiting: float = 0.0
        """``vllm:num_requests_waiting`` as last scraped (0 when unknown)."""
        self.listed = False
        """Its last model listing answered (readiness)."""

    def __repr__(self) -> str:
        return f"Replica({self.key}, in_flight={self.in_flight}, {self.breaker.state.value})"

    def record_failure(self, reason: str) -> None:
        if self.breaker.failure():
            EJECTIONS.labels(self.key).inc()
            wait = self.breaker.open_until - time.monotonic()
            logger.warning("replica %s ejected for %.1fs: %s", self.key, wait, reason, extra={"replica": self.key})

    def record_success(self) -> None:
        if self.breaker.success():
            logger.info("replica %s is back in service", self.key, extra={"replica": self.key})


def _score(session: str, replica: Replica) -> bytes:
    return hashlib.blake2b(f"{session}\0{replica.key}".encode(), digest_size=8).digest()


class ReplicaRouter:
    """Chooses replicas and holds their slots; one per gateway process."""

    def __init__(self, settings: RoutingSettings) -> None:
        self.settings = settings
        self._turn = itertools.count()
        self._freed = asyncio.Condition()
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def order(self, replicas: Sequence[Replica], session: str | None) -> list[Replica]:
        """Replicas in service, best first, by the policy."""
        live = [r for r in replicas if r.breaker.in_service]
        policy = self.settings.policy
        if policy == "session" and session:
            # Rendezvous hashing: a session keeps its replica while that one is in service,
            # and only the sessions of a replica that leaves move.
            return sorted(live, key=lambda r: _score(session, r), reverse=True)
        start = next(self._turn)
        rotated = [live[(start + i) % len(live)] for i in range(len(live))] if live else []
        if policy == "round_robin":
            return rotated
        return sorted(rotated, key=lambda r: (r.in_flight, r.waiting))  # stable: ties keep the rotation

    def has_candidate(self, replicas: Sequence[Replica], exclude: Collection[Replica]) -> bool:
        return any(r.breaker.in_service and r not in exclude for r in replicas)

    def _pick(self, replicas: Sequence[Replica], session: str | None, exclude: Collection[Replica]) -> Replica | None:
        for replica in self.order(replicas, session):
            if replica not in exclude and replica.in_flight < self.settings.max_in_flight_per_replica:
                return replica
        return None

    async def acquire(
        self, model: str, replicas: Sequence[Replica], session: str | None = None, exclude: Collection[Replica] = ()
    ) -> Replica:
        """A replica with a free slot (taken: give it back with :meth:`release`)."""
        if not self.has_candidate(replicas, exclude):
            raise ServiceUnavailableError(
                f"Every replica of the model '{model}' is unavailable; try again shortly.", code="model_unavailable"
            )
        replica = self._pick(replicas, session, exclude)
        if replica is None:
            replica = await self._wait_for_slot(model, replicas, session, exclude)
        replica.in_flight += 1
        IN_FLIGHT.labels(replica.key).set(replica.in_flight)
        ROUTED.labels(replica.key, self.settings.policy).inc()
        return replica

    async def _wait_for_slot(
        self, model: str, replicas: Sequence[Replica], session: str | None, exclude: Collection[Replica]
    ) -> Replica:
        if self._waiting >= self.settings.max_waiting:
            raise self._overloaded(model)
        self._waiting += 1
        WAITING.set(self._waiting)
        try:
            async with self._freed:
                await asyncio.wait_for(
                    self._freed.wait_for(lambda: self._pick(replicas, session, exclude) is not None),
                    timeout=self.settings.queue_timeout_s,
                )
        except TimeoutError:
            raise self._overloaded(model) from None
        finally:
            self._waiting -= 1
            WAITING.set(self._waiting)
        replica = self._pick(replicas, session, exclude)
        if replica is None:  # every replica left service while we waited
            raise ServiceUnavailableError(
                f"Every replica of the model '{model}' is unavailable; try again shortly.", code="model_unavailable"
            )
        return replica

    def _overloaded(self, model: str) -> RateLimitError:
        OVERLOADED.inc()
        return RateLimitError(
            f"The model '{model}' is currently overloaded with other requests; please retry shortly.",
            code="engine_overloaded",
            headers={"retry-after": "1"},
        )

    def release(self, replica: Replica) -> None:
        """Give back a slot (sync, so a stream dropped unread can give its slot back too)."""
        replica.in_flight -= 1
        IN_FLIGHT.labels(replica.key).set(replica.in_flight)
        if self._waiting:
            self.wake_waiters()

    def wake_waiters(self) -> None:
        """Queued requests look again (a slot was freed, or a replica rejoined)."""
        try:
            task = asyncio.get_running_loop().create_task(self._notify())
        except RuntimeError:  # no running loop (interpreter shutdown): nobody is waiting
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._freed:
            self._freed.notify_all()
