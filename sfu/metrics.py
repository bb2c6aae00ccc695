"""GET /metrics in Prometheus' text format (prometheus-client), computed at scrape time."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .auth.tokens import REFUSAL_REASONS
from .livekit.webhooks import EVENTS as WEBHOOK_EVENTS
from .livekit.webhooks import OUTCOMES as WEBHOOK_OUTCOMES
from .models.stats import SUPPRESSION_REASONS
from .signaling.client_limits import LIMIT_REASONS

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
    (
        "gaps_resynchronized",
        "Gaps in publishers' streams closed with a keyframe request instead of NACKs",
    ),
    ("data_messages_received", "Data channel messages received from clients"),
    ("data_messages_sent", "Data channel messages sent to clients"),
    ("data_bytes_received", "Data channel payload bytes received from clients"),
    ("data_bytes_sent", "Data channel payload bytes sent to clients"),
)


class SfuCollector(Collector):
    def __init__(self, server: SfuServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        # From the workers' stats, refreshed just before each scrape.
        counts = server.workers.counts()
        gauges = {
            "rooms": (len(server.rooms), "Open rooms"),
            "peers": (sum(len(r.peers) for r in server.rooms.values()), "Connected peers"),
            "transports": (counts["transports"], "Open transports (WebRTC and pipe)"),
            "producers": (counts["producers"], "Open producers (pipe producers included)"),
            "consumers": (counts["consumers"], "Open consumers (pipe consumers included)"),
            "data_producers": (counts["dataProducers"], "Open data producers (SCTP)"),
            "data_consumers": (counts["dataConsumers"], "Open data consumers (SCTP)"),
            "workers": (len(server.workers.live_workers()), "Live media worker processes"),
        }
        for name, (value, text) in gauges.items():
            yield GaugeMetricFamily(f"sfu_{name}", text, value=value)
        totals = server.workers.media_totals()
        for name, text in _COUNTERS:
            yield CounterMetricFamily(f"sfu_{name}", text, value=totals[name])
        dropped = CounterMetricFamily(
            "sfu_packets_dropped", "Datagrams dropped at media ports, by reason", labels=["reason"]
        )
        for key, value in sorted(totals.items()):
            if key.startswith("dropped:"):
                dropped.add_metric([key.partition(":")[2]], value)
        yield dropped
        data_dropped = CounterMetricFamily(
            "sfu_data_messages_dropped",
            "Data channel messages dropped, by reason (too-large, rate-limited, buffer-full...)",
            labels=["reason"],
        )
        for key, value in sorted(totals.items()):
            if key.startswith("data_dropped:"):
                data_dropped.add_metric([key.partition(":")[2]], value)
        yield data_dropped
        suppressed = CounterMetricFamily(
            "sfu_retransmissions_suppressed",
            "NACKed packets not retransmitted to subscribers, by reason",
            labels=["reason"],
        )
        for reason in SUPPRESSION_REASONS:
            suppressed.add_metric([reason], totals[f"retransmissions_suppressed:{reason}"])
        yield suppressed
        refused = CounterMetricFamily(
            "sfu_websocket_refusals",
            "WebSocket upgrades refused by access control (401/403) or the per-IP caps (429),"
            " by reason",
            labels=["reason"],
        )
        for reason in (*REFUSAL_REASONS, *LIMIT_REASONS):
            refused.add_metric([reason], server.refusals[reason])
        yield refused
        calls = CounterMetricFamily(
            "sfu_roomservice_calls",
            "RoomService (Twirp) calls answered, by method and Twirp code (ok on success)",
            labels=["method", "code"],
        )
        for (method, code), count in sorted(server.room_service.twirp.calls.items()):
            calls.add_metric([method, code], count)
        yield calls
        webhooks = CounterMetricFamily(
            "sfu_webhook_events",
            "LiveKit webhook events by outcome: delivered, failed (after every retry),"
            " dropped (the queue was full)",
            labels=["event", "outcome"],
        )
        for event in WEBHOOK_EVENTS:
            for outcome in WEBHOOK_OUTCOMES:
                webhooks.add_metric([event, outcome], server.webhooks.counts[event, outcome])
        yield webhooks
        yield CounterMetricFamily(
            "sfu_worker_restarts",
            "Media workers replaced after dying",
            value=server.workers.restarts,
        )
        cpu = CounterMetricFamily(
            "sfu_worker_cpu_seconds", "CPU time of each media worker process", labels=["worker"]
        )
        for worker in server.workers.live_workers():
            seconds = (worker.last_stats.get("process") or {}).get("cpuSeconds", 0.0)
            cpu.add_metric([str(worker.index)], seconds)
        yield cpu
        usage = resource.getrusage(resource.RUSAGE_SELF)
        yield CounterMetricFamily(
            "sfu_signaling_cpu_seconds",
            "CPU time of the signaling process",
            value=usage.ru_utime + usage.ru_stime,
        )
        yield GaugeMetricFamily(
            "sfu_event_loop_lag_seconds",
            "How late the event loop ran a timer, at the last check (every 0.5 s)",
            value=server.loop_lag,
        )


def metrics_registry(server: SfuServer) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SfuCollector(server))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST
