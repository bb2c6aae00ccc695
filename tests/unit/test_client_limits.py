"""ClientLimits: the per-IP caps, and memory that stays bounded by active IPs."""

from __future__ import annotations

import pytest

from sfu.signaling.client_limits import ClientLimits, LimitRefusal


def test_connections_are_capped_per_ip_and_released() -> None:
    limits = ClientLimits(max_connections=2, joins_per_second=0, join_burst=1)
    limits.admit("10.0.0.1")
    limits.admit("10.0.0.1")
    limits.admit("10.0.0.2")
    with pytest.raises(LimitRefusal) as refused:
        limits.admit("10.0.0.1")
    assert refused.value.reason == "too_many_connections"
    assert refused.value.body()["error"] == "too_many_requests"
    limits.release("10.0.0.1")
    limits.admit("10.0.0.1")
    for ip in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        limits.release(ip)
    assert not limits.connections
    assert not limits.buckets  # no join cap: no buckets at all


def test_zero_turns_both_caps_off() -> None:
    limits = ClientLimits(max_connections=0, joins_per_second=0, join_burst=1)
    for _ in range(10_000):
        limits.admit("127.0.0.1")
    assert limits.connections["127.0.0.1"] == 10_000


def test_the_join_burst_then_refusal_with_retry_after() -> None:
    limits = ClientLimits(max_connections=0, joins_per_second=0.1, join_burst=2)
    limits.admit("10.0.0.1")
    limits.admit("10.0.0.1")
    with pytest.raises(LimitRefusal) as refused:
        limits.admit("10.0.0.1")
    assert refused.value.reason == "join_rate"
    assert refused.value.retry_after == 10
    limits.admit("10.0.0.2")  # another address has its own bucket


def test_a_refilled_bucket_is_forgotten() -> None:
    limits = ClientLimits(max_connections=0, joins_per_second=1.0, join_burst=2)
    for n in range(100):
        limits.admit(f"10.0.0.{n}")
    assert len(limits.buckets) == 100
    for bucket in list(limits.buckets.values())[:99]:
        bucket.updated -= 2.0  # refilled: as good as a new one
    limits.admit("10.0.1.1")
    assert list(limits.buckets) == ["10.0.0.99", "10.0.1.1"]
