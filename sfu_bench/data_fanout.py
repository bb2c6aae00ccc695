"""``data-fanout-N``: one sender posts data messages at a fixed rate to N
receivers through the server's data producers and consumers (SCTP over DTLS).

The clients are pymediasoup bots (``sfu.client.SfuClient``) in this process.
Each message carries its sequence number and the sender's CLOCK_MONOTONIC
send time, so the receivers measure delivery, order and latency; the server's
CPU (signalling process and media workers) is read over the window. A second
pass looks for the highest rate the server delivers to N receivers without
loss (every message, within ``LATENCY_LIMIT_MS`` at p99), doubling the rate
until it fails.

The bots run aiortc's SCTP in Python, as the server does: the bench process
pays about as much per message as the server, and on a small machine it can be
the limit. Its own CPU is reported beside the server's, so a reader can tell.
"""

from __future__ import annotations

import asyncio
import os
import resource
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from .target import Target

__all__ = ["MESSAGE_BYTES", "run_data_fanout"]

MESSAGE_BYTES = 200  # a chat line with its JSON envelope
_HEADER = struct.Struct("!Qd")  # sequence number, send time (time.monotonic)
LATENCY_LIMIT_MS = 250.0
JOIN_TIMEOUT = 60.0
DRAIN_SECONDS = 2.0  # after the last send, for messages still on the way
SEARCH_RATES = (100, 200, 400, 800, 1600, 3200, 6400)
SEARCH_WINDOW = 3.0
# The sender stops and counts itself the limit above this much buffered data.
SENDER_BUFFER_LIMIT = 1 << 20


@dataclass
class _Receiver:
    latencies_ms: list[float] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    out_of_order: int = 0
    last: int = -1
    # Set at each message: the drain after a window waits on it, not on a timer.
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, payload: bytes, now: float) -> None:
        if len(payload) < _HEADER.size:
            return
        seq, sent = _HEADER.unpack_from(payload)
        self.seen.add(seq)
        if seq < self.last:
            self.out_of_order += 1
        self.last = max(self.last, seq)
        self.latencies_ms.append((now - sent) * 1000.0)
        self.arrived.set()

    def reset(self) -> None:
        self.latencies_ms.clear()
        self.seen.clear()
        self.out_of_order = 0
        self.last = -1


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _join_all(url: str, room: str, n: int) -> tuple[Any, list[Any], list[_Receiver]]:
    from sfu.client import SfuClient

    loopback = ["127.0.0.1"]
    sender = SfuClient(url, room, "sender", ice_addresses=loopback, consume=False)
    await asyncio.wait_for(sender.join(), JOIN_TIMEOUT)
    receivers: list[Any] = []
    states: list[_Receiver] = []
    for index in range(n):
        client = SfuClient(url, room, f"receiver-{index}", ice_addresses=loopback, produce=False)
        state = _Receiver()

        def on_data(message: Any, state: _Receiver = state) -> None:
            if isinstance(message.data, bytes):
                state.take(message.data, time.monotonic())

        client.on("data", on_data)
        await asyncio.wait_for(client.join(), JOIN_TIMEOUT)
        receivers.append(client)
        states.append(state)
    return sender, receivers, states


async def _send_at(producer: Any, rate: float, seconds: float, first_seq: int) -> tuple[int, bool]:
    """``rate`` messages a second for ``seconds``; returns how many were sent and
    whether the sender itself fell behind (its SCTP buffer over the limit)."""
    loop = asyncio.get_running_loop()
    padding = bytes(MESSAGE_BYTES - _HEADER.size)
    start = loop.time()
    total = round(rate * seconds)
    sent = 0
    while sent < total:
        due = start + sent / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if producer.bufferedAmount > SENDER_BUFFER_LIMIT:
            return sent, True
        producer.send(_HEADER.pack(first_seq + sent, time.monotonic()) + padding)
        sent += 1
    return sent, False


async def _wait_receivers_ready(producer: Any, states: list[_Receiver], seconds: float) -> None:
    """Messages flow to every receiver (each got at least one of a trickle)."""
    deadline = time.monotonic() + seconds
    seq = 1 << 40  # outside the measured sequence numbers
    padding = bytes(MESSAGE_BYTES - _HEADER.size)
    while not all(state.seen for state in states):
        if time.monotonic() > deadline:
            ready = sum(1 for state in states if state.seen)
            raise RuntimeError(f"only {ready}/{len(states)} receivers got data messages")
        producer.send(_HEADER.pack(seq, time.monotonic()) + padding)
        seq += 1
        await asyncio.sleep(0.05)
    for state in states:
        state.reset()


async def _measure(
    target: Target, producer: Any, states: list[_Receiver], rate: float, seconds: float, seq0: int
) -> dict[str, Any]:
    for state in states:
        state.reset()
    cpu0, own0, t0 = target.cpu_seconds(), _own_cpu_seconds(), time.monotonic()
    sent, sender_limited = await _send_at(producer, rate, seconds, seq0)
    window = time.monotonic() - t0
    cpu1, own1 = target.cpu_seconds(), _own_cpu_seconds()
    expected = set(range(seq0, seq0 + sent))
    await _drain(states, expected, time.monotonic() + DRAIN_SECONDS)
    delivered = sum(len(expected & s.seen) for s in states)
    latencies = [value for s in states for value in s.latencies_ms]
    server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    wanted = sent * len(states)
    return {
        "rate": rate,
        "sent": sent,
        "delivered": delivered,
        "loss_percent": round(100.0 * (wanted - delivered) / wanted, 3) if wanted else None,
        "out_of_order": sum(s.out_of_order for s in states),
        "delivered_per_s": round(delivered / window, 1),
        "server_cpu_percent": None if server_cpu is None else round(100 * server_cpu / window, 1),
        "server_us_per_message": (
            round(1e6 * server_cpu / delivered, 1) if server_cpu and delivered else None
        ),
        "bench_cpu_percent": round(100 * (own1 - own0) / window, 1),
        "latency_p50_ms": _round(_percentile(latencies, 0.5)),
        "latency_p99_ms": _round(_percentile(latencies, 0.99)),
        "sender_limited": sender_limited,
    }


async def _drain(states: list[_Receiver], expected: set[int], deadline: float) -> None:
    """Until every receiver has ``expected`` or ``deadline`` passes."""
    for state in states:
        while not expected <= state.seen:
            state.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(state.arrived.wait(), left)
            except TimeoutError:
                return


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _clean(result: dict[str, Any]) -> bool:
    p99 = result["latency_p99_ms"]
    return (
        not result["sender_limited"]
        and result["loss_percent"] == 0
        and p99 is not None
        and p99 <= LATENCY_LIMIT_MS
    )


async def _run(
    target: Target, room: str, n: int, rate: float, seconds: float, search: bool
) -> dict[str, Any]:
    from sfu.client.data import DataOptions

    sender, receivers, states = await _join_all(target.url, room, n)
    try:
        producer = await sender.produce_data("bench", DataOptions())
        if producer.readyState != "open":
            opened = asyncio.Event()
            producer.once("open", opened.set)
            if producer.readyState != "open":
                await asyncio.wait_for(opened.wait(), JOIN_TIMEOUT)
        await _wait_receivers_ready(producer, states, JOIN_TIMEOUT)
        steady = await _measure(target, producer, states, rate, seconds, 0)
        result: dict[str, Any] = {**steady, "message_bytes": MESSAGE_BYTES}
        if search:
            steps = []
            seq = steady["sent"]
            best = None
            for step_rate in SEARCH_RATES:
                step = await _measure(target, producer, states, step_rate, SEARCH_WINDOW, seq)
                seq += step["sent"]
                steps.append(step)
                if not _clean(step):
                    break
                best = step_rate
            result["max_clean_rate"] = best
            result["search"] = steps
        return result
    finally:
        await asyncio.gather(
            *(client.close() for client in [sender, *receivers]), return_exceptions=True
        )


def run_data_fanout(
    target: Target, room: str, n: int, *, rate: float, seconds: float, search: bool
) -> dict[str, Any]:
    """One ``data-fanout-N`` run against ``target``: the steady window at ``rate``
    messages/s, and with ``search`` the highest clean rate."""
    if os.environ.get("SFU_EVENT_LOOP") != "asyncio":
        try:
            import uvloop

            return uvloop.run(_run(target, room, n, rate, seconds, search))
        except ImportError:
            pass
    return asyncio.run(_run(target, room, n, rate, seconds, search))
