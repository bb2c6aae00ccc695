"""GET /metrics parses as Prometheus text and its counters rise while media flows."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ServerProcess
from .helpers import join


def scrape(server: ServerProcess) -> dict[str, float]:
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "worker")
            values[sample.name + (f"{{{label}}}" if label else "")] = sample.value
    return values


async def test_metrics_parse_and_counters_rise_with_media(sfu_server: ServerProcess) -> None:
    idle = scrape(sfu_server)
    assert idle["sfu_rooms"] == 0
    assert idle["sfu_rtp_packets_sent_total"] == 0
    assert "sfu_event_loop_lag_seconds" in idle
    assert "sfu_worker_cpu_seconds_total" in idle
    alice = await join(sfu_server, "metrics", "alice", 440)
    bob = await join(sfu_server, "metrics", "bob", 660)
    try:
        assert await bob.client.wait_for_consumers(2, timeout=15)
        assert await bob.sink_for("alice", "video").wait_frames(5, timeout=20)
        first = scrape(sfu_server)
        await asyncio.sleep(1.5)
        second = scrape(sfu_server)
        assert first["sfu_rooms"] == 1
        assert first["sfu_peers"] == 2
        assert first["sfu_producers"] == 4
        assert first["sfu_consumers"] == 4
        for name in (
            "sfu_rtp_packets_received_total",
            "sfu_rtp_packets_sent_total",
            "sfu_bytes_received_total",
            "sfu_bytes_sent_total",
        ):
            assert second[name] > first[name] > 0, name
        assert second["sfu_keyframe_requests_sent_total"] >= 1
    finally:
        await asyncio.gather(alice.client.close(), bob.client.close())
    await asyncio.sleep(0.5)
    after = scrape(sfu_server)
    # Totals never go down when transports close.
    assert after["sfu_rtp_packets_sent_total"] >= second["sfu_rtp_packets_sent_total"]
    assert after["sfu_transports"] == 0
