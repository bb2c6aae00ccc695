"""sfu_bench's arithmetic and scenario names, without running anything."""

from __future__ import annotations

import select
import socket
import time
from typing import Any

import pytest

from sfu_bench.load import Recorder, RtpCounter, arrival_time
from sfu_bench.report import (
    baseline_ratios,
    distribution,
    fanout_fit,
    floor_ratios,
    format_summary,
    format_table,
)
from sfu_bench.scenarios import DEFAULT_SCENARIOS, QUICK_SCENARIOS, expand_scenarios, parse_scenario


def test_scenario_names_and_families() -> None:
    assert [s.name for s in expand_scenarios(["fanout"])] == [
        "fanout-1",
        "fanout-4",
        "fanout-8",
        "fanout-16",
        "fanout-32",
    ]
    names = [s.name for s in expand_scenarios(["room-4,baseline", "capacity", "room-4"])]
    assert names == [
        "room-4",
        "baseline-fanout-1",
        "baseline-fanout-4",
        "baseline-fanout-8",
        "capacity",
        "capacity-voice",
    ]
    assert parse_scenario("capacity-voice").family == "capacity"
    assert parse_scenario("baseline-fanout-4").target_kind == "baseline"
    assert parse_scenario("floor-16").target_kind == "floor"
    assert [s.name for s in expand_scenarios(["floor"])][-1] == "floor-32"
    assert parse_scenario("voice-200").n == 200
    assert set(QUICK_SCENARIOS) <= set(DEFAULT_SCENARIOS)
    for bad in ("fanout", "fanout-0", "room-1", "voice-100000", "mesh-4"):
        with pytest.raises(ValueError, match=r"unknown scenario|N must be within"):
            parse_scenario(bad)


def test_distribution() -> None:
    assert distribution([])["samples"] == 0
    d = distribution([float(x) for x in range(1, 101)])
    assert d["p50"] == 50.5
    assert d["max"] == 100
    assert d["samples"] == 100
    assert 99 <= d["p99"] <= 100


def _fanout(n: int, out: float, cpu: float) -> dict[str, Any]:
    return {
        "name": f"fanout-{n}",
        "family": "fanout",
        "n": n,
        "packets_out_per_s": out,
        "server_cpu_percent": cpu,
    }


def test_fanout_fit_is_the_marginal_cost_per_packet() -> None:
    # 2 % fixed plus 25 µs per packet: 1000 packets/s cost 2.5 % of a core.
    results = [_fanout(n, 140.0 * n, 2.0 + 140.0 * n * 25e-6 * 100) for n in (1, 4, 8, 16)]
    fit = fanout_fit(results)
    assert fit is not None
    assert fit["marginal_us_per_packet"] == pytest.approx(25.0, abs=0.01)
    assert fit["intercept_cpu_percent"] == pytest.approx(2.0, abs=0.01)
    assert fit["r2"] == pytest.approx(1.0)
    assert fanout_fit(results[:1]) is None


def test_floor_fit_and_ratios_pair_fanout_with_floor() -> None:
    # The SFU: 2 % + 30 µs per packet; the minimal forwarder: 2 % + 20 µs per packet.
    sfu = [_fanout(n, 140.0 * n, 2.0 + 140.0 * n * 30e-6 * 100) for n in (1, 8, 16)]
    floor = [
        {
            **_fanout(n, 140.0 * n, 2.0 + 140.0 * n * 20e-6 * 100),
            "name": f"floor-{n}",
            "family": "floor",
        }
        for n in (1, 8)
    ]
    results = sfu + floor
    sfu_fit = fanout_fit(results)
    assert sfu_fit is not None
    assert sfu_fit["marginal_us_per_packet"] == pytest.approx(30.0, abs=0.01)
    floor_fit = fanout_fit(results, family="floor")
    assert floor_fit is not None
    assert floor_fit["marginal_us_per_packet"] == pytest.approx(20.0, abs=0.01)
    ratios = floor_ratios(results)
    assert [r["n"] for r in ratios] == [1, 8]  # fanout-16 has no floor-16
    assert ratios[1]["ratio"] == pytest.approx((2.0 + 3.36) / (2.0 + 2.24), abs=0.01)
    summary = format_summary(results, fanout_fit(results), [], floor_fit)
    assert "20.0 µs per extra packet" in summary
    assert "the SFU's is 1.50x that" in summary
    assert "fanout-8 5.4 % / 4.2 % = 1.26x" in summary


def test_baseline_ratio_pairs_equal_n() -> None:
    results = [
        {**_fanout(4, 560.0, 4.0), "us_per_packet": 70.0},
        {
            "name": "baseline-fanout-4",
            "family": "baseline-fanout",
            "n": 4,
            "server_cpu_percent": 60.0,
            "us_per_packet": 1400.0,
        },
        {
            "name": "baseline-fanout-8",
            "family": "baseline-fanout",
            "n": 8,
            "server_cpu_percent": 90.0,
        },
    ]
    [ratio] = baseline_ratios(results)
    assert ratio["n"] == 4
    assert ratio["cpu_ratio"] == 15.0
    assert ratio["us_per_packet_ratio"] == 20.0
    table = format_table([*results, {"name": "room-4", "error": "boom\ndetails"}])
    assert "baseline-fanout-4" in table
    assert "error: boom" in table


def test_rtp_counter_counts_loss_and_reports_it() -> None:
    recorder = Recorder()
    counter = RtpCounter(recorder)
    counter.add_stream(0x1234, "producer", "video", rtx_ssrc=0x5678)

    def packet(seq: int, ssrc: int = 0x1234, ts: int = 1000, marker: bool = False) -> bytes:
        return (
            bytes([0x80, 0x60 | (0x80 if marker else 0)])
            + seq.to_bytes(2, "big")
            + ts.to_bytes(4, "big")
            + ssrc.to_bytes(4, "big")
            + b"x" * 20
        )

    recorder.recording = True
    for seq in (65534, 65535, 1, 2):  # 0 is lost, across the wrap
        counter(packet(seq, ts=seq // 2, marker=True))
    counter(packet(7, ssrc=0x5678))  # RTX: counted apart
    counter(packet(7, ssrc=0x9999))  # unknown
    totals = counter.totals()
    assert totals["received"] == 4
    assert totals["expected"] == 5
    assert totals["rtx"] == 1
    assert totals["unknown"] == 1
    [block] = counter.report_blocks()
    assert block.ssrc == 0x1234
    assert block.packets_lost == 1
    assert block.highest_seq == 0x10002  # one wrap
    assert block.fraction_lost == 256 // 5
    assert len(recorder.received) == 3  # new timestamps only: 32767, 0, 1


def test_arrival_time_is_when_the_datagram_reached_the_socket() -> None:
    """The kernel's receive stamp, not the read: a datagram left waiting shows its wait."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        # Nothing read yet: the kernel has no stamp to give (and turns stamping on).
        assert arrival_time(receiver.fileno(), 5.0) == 5.0
        # The kernel may turn stamping on a moment later (a deferred static key): wait
        # until a probe read 50 ms after its send is stamped with its send time (bounded).
        for _ in range(50):
            sender.sendto(b"probe", receiver.getsockname())
            time.sleep(0.05)
            assert select.select([receiver], [], [], 5.0)[0]
            receiver.recv(64)
            read = time.monotonic()
            if arrival_time(receiver.fileno(), read) < read - 0.03:
                break
        else:
            pytest.fail("the kernel never stamped a datagram")
        sent_at = time.monotonic()
        sender.sendto(b"first", receiver.getsockname())
        time.sleep(0.1)
        sender.sendto(b"second", receiver.getsockname())
        assert select.select([receiver], [], [], 5.0)[0]
        assert receiver.recv(64) == b"first"
        first_read = time.monotonic()
        first = arrival_time(receiver.fileno(), first_read)
        assert receiver.recv(64) == b"second"
        second_read = time.monotonic()
        second = arrival_time(receiver.fileno(), second_read)
    # (bounds far from the 0.1 s wait, for a loaded machine)
    assert sent_at - 0.001 <= first < sent_at + 0.03 < first_read
    assert first + 0.08 <= second <= second_read
    assert arrival_time(-1, 7.0) == 7.0


def test_latencies_to_the_socket_and_as_read() -> None:
    counter = RtpCounter(Recorder())
    counter.recorder.recording = True
    counter.add_stream(0x1234, "producer", "audio", rtx_ssrc=None)
    packet = bytes([0x80, 0x60, 0, 1]) + (90).to_bytes(4, "big") + (0x1234).to_bytes(4, "big")
    counter(packet)  # no socket: read time for both
    [(producer_id, ts, arrival, read)] = counter.recorder.received
    assert (producer_id, ts) == ("producer", 90)
    assert arrival == read
