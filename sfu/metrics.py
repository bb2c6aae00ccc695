"""GET /metrics in Prometheus' text format (prometheus-client), computed at scrape time."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .server import SfuServer

_COUNTERS = (
    ("rtp_packets_received", "RTP packets received from publishers"),
    ("rtp_packets_sent", "RTP packets sent to subscribers (forwarded and retransmitted)"),
    ("bytes_received", "UDP bytes received on media transports"),
    ("bytes_sent", "UDP bytes sent on media transports"),
    ("nacks_sent", "NACK packets sent to publishers"),
    ("nacks_received", "NACK packets received from subscribers"),
    ("keyframe_requests_sent", "PLI/FIR keyframe requests sent to publishers"),
    ("keyframe_requests_received", "PLI/FIR keyframe requests received from subscribers"),
    ("packets_retransmitted", "Packets retransmitted to subscribers (RTX)"),
)


class SfuCollector:
    def __init__(self, server: SfuServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        counts = server.worker.counts()
        gauges = {
            "rooms": (len(server.rooms), "Open rooms"),
            "peers": (sum(len(r.peers) for r in server.rooms.values()), "Connected peers"),
            "transports": (counts["transports"], "Open WebRTC transports"),
            "producers": (counts["producers"], "Open producers"),
            "consumers": (counts["consumers"], "Open consumers"),
        }
        for name, (value, text) in gauges.items():
            yield GaugeMetricFamily(f"sfu_{name}", text, value=value)
        totals = server.worker.media_totals()
        for name, text in _COUNTERS:
            yield CounterMetricFamily(f"sfu_{name}", text, value=totals[name])
        dropped = CounterMetricFamily(
            "sfu_packets_dropped", "Datagrams dropped at media ports, by reason", labels=["reason"]
        )
        for key, value in sorted(totals.items()):
            if key.startswith("dropped:"):
                dropped.add_metric([key.partition(":")[2]], value)
        yield dropped
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = CounterMetricFamily(
            "sfu_worker_cpu_seconds", "CPU time of the worker process", labels=["worker"]
        )
        cpu.add_metric([server.worker.id], usage.ru_utime + usage.ru_stime)
        yield cpu
        yield GaugeMetricFamily(
            "sfu_event_loop_lag_seconds",
            "How late the event loop ran a timer, at the last check (every 0.5 s)",
            value=server.loop_lag,
        )


def metrics_registry(server: SfuServer) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SfuCollector(server))  # type: ignore[arg-type]
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST
