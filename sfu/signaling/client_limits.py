"""Per client IP caps on the protoo WebSocket: concurrent connections and a
join rate (a token bucket per IP), checked before the upgrade (HTTP 429)."""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict
from typing import Any

from .protoo import TokenBucket

# Every reason an upgrade is refused for by these caps (the metrics label).
LIMIT_REASONS: tuple[str, ...] = ("too_many_connections", "join_rate")


class LimitRefusal(Exception):
    """Why an upgrade from this IP is refused now (HTTP 429)."""

    status = 429

    def __init__(self, reason: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The JSON body of the refused upgrade (the shape of the auth refusals)."""
        return {"error": "too_many_requests", "reason": self.reason, "message": self.message}


class ClientLimits:
    """Concurrent connections and join rate per IP. 0 turns a cap off.

    Memory stays bounded by the active IPs: an IP's connection count goes when
    it reaches 0, and its bucket once it has refilled (a full bucket is the
    same as a new one)."""

    def __init__(self, max_connections: int, joins_per_second: float, join_burst: int) -> None:
        self.max_connections = max_connections
        self.joins_per_second = joins_per_second
        self.join_burst = join_burst
        self.connections: Counter[str] = Counter()
        # Least recently used first, so idle buckets are found at the front.
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def admit(self, ip: str) -> None:
        """Count a new connection from ``ip``, or raise LimitRefusal. The caller
        calls release(ip) when the connection ends."""
        if self.max_connections and self.connections[ip] >= self.max_connections:
            raise LimitRefusal(
                "too_many_connections",
                f"at most {self.max_connections} WebSocket connections per client address",
            )
        if self.joins_per_second:
            bucket = self._bucket(ip)
            if not bucket.take():
                wait = math.ceil((1.0 - bucket.tokens) / self.joins_per_second)
                raise LimitRefusal(
                    "join_rate",
                    f"too many joins from this address: at most {self.join_burst} at once,"
                    f" then {self.joins_per_second:g} a second",
                    retry_after=max(1, wait),
                )
        self.connections[ip] += 1

    def release(self, ip: str) -> None:
        self.connections[ip] -= 1
        if self.connections[ip] <= 0:
            del self.connections[ip]

    def _bucket(self, ip: str) -> TokenBucket:
        self._forget_idle(time.monotonic())
        bucket = self.buckets.get(ip)
        if bucket is None:
            bucket = self.buckets[ip] = TokenBucket(self.joins_per_second, self.join_burst)
        else:
            self.buckets.move_to_end(ip)
        return bucket

    def _forget_idle(self, now: float) -> None:
        refill = self.join_burst / self.joins_per_second
        while self.buckets:
            bucket = next(iter(self.buckets.values()))
            if now - bucket.updated < refill:
                break
            self.buckets.popitem(last=False)

    def describe(self) -> dict[str, Any]:
        """The caps, for /health (0: off)."""
        return {
            "maxConnectionsPerIp": self.max_connections,
            "joinsPerSecondPerIp": self.joins_per_second,
            "joinBurstPerIp": self.join_burst,
        }
