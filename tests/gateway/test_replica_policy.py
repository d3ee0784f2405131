"""The routing rules on their own: breaker states, policy order, slots and the wait queue."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.config import RoutingSettings, UpstreamConfig
from gateway.replicas import BreakerState, Replica, ReplicaRouter
from services.errors import RateLimitError, ServiceUnavailableError


def replicas(settings: RoutingSettings, count: int) -> list[Replica]:
    return [Replica(UpstreamConfig(url=f"http://10.0.0.{i}:8001/v1"), settings) for i in range(count)]


def test_breaker_ejects_backs_off_doubling_and_rejoins_after_a_good_probe() -> None:
    settings = RoutingSettings(eject_after_failures=2, ejection_base_s=10, ejection_max_s=25)
    [replica] = replicas(settings, 1)
    replica.record_failure("boom")
    assert replica.breaker.in_service  # one failure is not enough at eject_after_failures=2
    replica.record_failure("boom")
    breaker = replica.breaker
    assert breaker.state is BreakerState.OPEN and 9 < breaker.open_until - time.monotonic() <= 10
    assert not breaker.probe_due(time.monotonic())
    assert breaker.probe_due(breaker.open_until) and breaker.state is BreakerState.HALF_OPEN
    replica.record_failure("probe failed")  # half-open + failure: out again, for twice as long
    assert breaker.state is BreakerState.OPEN and 19 < breaker.open_until - time.monotonic() <= 20
    breaker.probe_due(breaker.open_until)
    replica.record_failure("probe failed")
    assert breaker.open_until - time.monotonic() <= 25  # capped
    breaker.probe_due(breaker.open_until)
    replica.record_success()
    assert breaker.in_service and breaker.failures == 0 and breaker.ejections_in_a_row == 0


def test_policies_order_replicas() -> None:
    settings = RoutingSettings(policy="least_busy")
    router = ReplicaRouter(settings)
    a, b, c = replicas(settings, 3)
    a.in_flight, b.in_flight, c.in_flight = 2, 0, 0
    b.waiting, c.waiting = 5, 1
    assert router.order([a, b, c], None) == [c, b, a]  # fewest in flight, then vLLM's queue
    c.breaker.failure()
    assert router.order([a, b, c], None) == [b, a]  # ejected replicas are not candidates

    router = ReplicaRouter(RoutingSettings(policy="round_robin"))
    firsts = [router.order([a, b], None)[0] for _ in range(4)]
    assert firsts == [a, b, a, b]

    router = ReplicaRouter(RoutingSettings(policy="session"))
    homes = {s: router.order([a, b], s)[0] for s in (f"s{i}" for i in range(40))}
    assert set(homes.values()) == {a, b}
    assert all(router.order([a, b], s)[0] is home for s, home in homes.items())  # sticky
    # A third replica takes some sessions; the rest stay where they were (rendezvous hashing).
    d = replicas(settings, 4)[3]
    moved = [s for s, home in homes.items() if router.order([a, b, d], s)[0] is not home]
    assert all(router.order([a, b, d], s)[0] is d for s in moved) and len(moved) < len(homes)


async def test_slots_queue_and_refuse() -> None:
    settings = RoutingSettings(max_in_flight_per_replica=1, max_waiting=1, queue_timeout_s=30)
    router = ReplicaRouter(settings)
    [a] = replicas(settings, 1)
    assert await router.acquire("m", [a]) is a
    queued = asyncio.create_task(router.acquire("m", [a]))
    await asyncio.sleep(0.05)
    with pytest.raises(RateLimitError) as refused:  # the queue (1) is full
        await router.acquire("m", [a])
    assert refused.value.code == "engine_overloaded" and refused.value.status_code == 429
    router.release(a)
    assert await asyncio.wait_for(queued, 30) is a and a.in_flight == 1
    router.release(a)
    a.breaker.failure()
    with pytest.raises(ServiceUnavailableError) as down:
        await router.acquire("m", [a])
    assert down.value.code == "model_unavailable"


async def test_a_queued_request_times_out_with_429() -> None:
    settings = RoutingSettings(max_in_flight_per_replica=1, max_waiting=4, queue_timeout_s=0.2)
    router = ReplicaRouter(settings)
    [a] = replicas(settings, 1)
    await router.acquire("m", [a])
    with pytest.raises(RateLimitError):
        await router.acquire("m", [a])
    assert a.in_flight == 1


def test_workers_split_the_slot_and_queue_bounds() -> None:
    settings = RoutingSettings(max_in_flight_per_replica=5, max_waiting=3)
    assert settings.per_worker(1) is settings
    share = settings.per_worker(2)
    assert (share.max_in_flight_per_replica, share.max_waiting) == (3, 2)  # rounded up: 2 x 3 >= 5
    assert share.policy == settings.policy
