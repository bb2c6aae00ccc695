"""Numbers and words: distributions, the fanout fit, the baseline ratio, the table, progress."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = [
    "Progress",
    "baseline_ratios",
    "distribution",
    "fanout_fit",
    "format_summary",
    "format_table",
]


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(values: Sequence[float]) -> dict[str, Any]:
    """p50, p99, mean, max and the sample count, in the values' unit (rounded to 0.01)."""
    if not values:
        return {"p50": None, "p99": None, "mean": None, "max": None, "samples": 0}
    return {
        "p50": round(_percentile(values, 0.50), 2),
        "p99": round(_percentile(values, 0.99), 2),
        "mean": round(sum(values) / len(values), 2),
        "max": round(max(values), 2),
        "samples": len(values),
    }


def fanout_fit(results: Sequence[dict[str, Any]], family: str = "fanout") -> dict[str, Any] | None:
    """Least squares of server CPU (cores) against forwarded packets/s over the
    ``family`` runs (fanout-N, or the floor-N minimal forwarder).

    The slope is the marginal server CPU per extra forwarded packet.
    """
    points = [
        (r["packets_out_per_s"], r["server_cpu_percent"] / 100, r["name"])
        for r in results
        if r.get("family") == family
        and not r.get("error")
        and r.get("packets_out_per_s")
        and r.get("server_cpu_percent") is not None
    ]
    if len({x for x, _, _ in points}) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _, _ in points) / n
    mean_y = sum(y for _, y, _ in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y, _ in points)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for _, y, _ in points)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y, _ in points)
    return {
        "marginal_us_per_packet": round(slope * 1e6, 2),
        "intercept_cpu_percent": round(intercept * 100, 2),
        "r2": round(1 - ss_res / ss_tot, 4) if ss_tot > 0 else None,
        "points": [
            {"name": name, "packets_out_per_s": x, "server_cpu_percent": round(y * 100, 2)}
            for x, y, name in points
        ],
    }


def baseline_ratios(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each baseline-fanout-N with a fanout-N in the same run: baseline / SFU."""
    sfu = {r["n"]: r for r in results if r.get("family") == "fanout" and not r.get("error")}
    ratios = []
    for base in results:
        if base.get("family") != "baseline-fanout" or base.get("error"):
            continue
        ours = sfu.get(base["n"])
        if ours is None:
            continue
        entry: dict[str, Any] = {
            "n": base["n"],
            "baseline_cpu_percent": base.get("server_cpu_percent"),
            "sfu_cpu_percent": ours.get("server_cpu_percent"),
            "baseline_us_per_packet": base.get("us_per_packet"),
            "sfu_us_per_packet": ours.get("us_per_packet"),
            "baseline_loss_percent": base.get("loss_percent"),
            "sfu_loss_percent": ours.get("loss_percent"),
            "cpu_ratio": None,
            "us_per_packet_ratio": None,
        }
        if entry["baseline_cpu_percent"] and entry["sfu_cpu_percent"]:
            entry["cpu_ratio"] = round(entry["baseline_cpu_percent"] / entry["sfu_cpu_percent"], 1)
        if entry["baseline_us_per_packet"] and entry["sfu_us_per_packet"]:
            entry["us_per_packet_ratio"] = round(
                entry["baseline_us_per_packet"] / entry["sfu_us_per_packet"], 1
            )
        ratios.append(entry)
    return ratios


def _fmt(value: Any, spec: str = ".0f", none: str = "-") -> str:
    if value is None:
        return none
    return format(value, spec)


COLUMNS = [
    ("scenario", "<"),
    ("peers", ">"),
    ("in pkt/s", ">"),
    ("out pkt/s", ">"),
    ("CPU %", ">"),
    ("idle %", ">"),
    ("wait %", ">"),
    ("µs/pkt", ">"),
    ("loss %", ">"),
    ("lat p50/p99 ms", ">"),
    ("join p50/max ms", ">"),
    ("RSS/peer KiB", ">"),
    ("clients CPU %", ">"),
]


def _row(r: dict[str, Any]) -> list[str]:
    if r.get("error"):
        return [r["name"], "error: " + str(r["error"]).splitlines()[0][:80]] + [""] * (
            len(COLUMNS) - 2
        )
    latency = r.get("latency_ms") or {}
    join = r.get("join_ms") or {}
    rss = r.get("server_rss_per_peer_bytes")
    name = r["name"]
    if r.get("family") == "capacity":
        noun = "listeners" if r.get("subscriber_kind") == "audio" else "subs"
        name = f"{name} ({r.get('last_good_subscribers', 0)} {noun})"
    return [
        name,
        _fmt(r.get("peers"), "d"),
        _fmt(r.get("packets_in_per_s")),
        _fmt(r.get("packets_out_per_s")),
        _fmt(r.get("server_cpu_percent"), ".1f"),
        _fmt(r.get("server_idle_cpu_percent"), ".1f"),
        _fmt(r.get("server_cpu_wait_percent"), ".0f"),
        _fmt(r.get("us_per_packet"), ".1f"),
        _fmt(r.get("loss_percent"), ".2f"),
        f"{_fmt(latency.get('p50'), '.1f')}/{_fmt(latency.get('p99'), '.1f')}",
        f"{_fmt(join.get('p50'))}/{_fmt(join.get('max'))}",
        _fmt(rss / 1024 if rss is not None else None),
        _fmt(r.get("clients_cpu_percent"), ".0f"),
    ]


def format_table(results: Sequence[dict[str, Any]]) -> str:
    rows = [[c for c, _ in COLUMNS]] + [_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(len(COLUMNS))]
    lines = []
    for index, row in enumerate(rows):
        if len(row) > 1 and row[1].startswith("error:"):
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]}")
            continue
        cells = [
            f"{cell:{align}{widths[i]}}"
            for i, (cell, (_, align)) in enumerate(zip(row, COLUMNS, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def floor_ratios(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each floor-N with a fanout-N in the same run: SFU CPU / minimal forwarder CPU."""
    floors = {r["n"]: r for r in results if r.get("family") == "floor" and not r.get("error")}
    ratios = []
    for ours in results:
        if ours.get("family") != "fanout" or ours.get("error"):
            continue
        floor = floors.get(ours["n"])
        if floor is None or not floor.get("server_cpu_percent"):
            continue
        sfu_cpu = ours.get("server_cpu_percent")
        ratios.append(
            {
                "n": ours["n"],
                "name": ours["name"],  # fanout-N, or fanout-N@Kw with --workers 1,2
                "sfu_cpu_percent": sfu_cpu,
                "floor_cpu_percent": floor["server_cpu_percent"],
                "ratio": round(sfu_cpu / floor["server_cpu_percent"], 2) if sfu_cpu else None,
            }
        )
    return ratios


def _data_fanout_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """One line per data-fanout-N run: delivery, cost, latency, the clean rate."""
    lines = []
    for r in results:
        if r.get("family") != "data-fanout" or r.get("error"):
            continue
        clean = r.get("max_clean_rate")
        lines.append(
            f"{r['name']}: {r['delivered_per_s']:.0f} data messages/s delivered "
            f"({r['rate']:.0f}/s x {r['n']} receivers, {r['message_bytes']} B), server "
            f"{_fmt(r['server_us_per_message'])} µs CPU per delivered message, latency p50/p99 "
            f"{_fmt(r['latency_p50_ms'])}/{_fmt(r['latency_p99_ms'])} ms, loss "
            f"{_fmt(r['loss_percent'])} %, bench clients {r['bench_cpu_percent']:.0f} % CPU"
            + (
                ""
                if "max_clean_rate" not in r
                else f"; highest clean rate (no loss, p99 <= 250 ms): "
                f"{'none' if clean is None else f'{clean} msg/s'}"
            )
        )
    return lines


def format_summary(
    results: Sequence[dict[str, Any]],
    fit: dict[str, Any] | None,
    ratios: Sequence[dict[str, Any]],
    floor_fit: dict[str, Any] | None = None,
) -> str:
    lines = []
    if fit is not None:
        lines.append(
            f"marginal server CPU: {fit['marginal_us_per_packet']:.1f} µs per extra forwarded packet "
            f"(least squares over {', '.join(p['name'] for p in fit['points'])}; "
            f"r² {_fmt(fit['r2'], '.3f')})"
        )
    if floor_fit is not None:
        versus = ""
        if fit is not None and floor_fit["marginal_us_per_packet"] > 0:
            times = fit["marginal_us_per_packet"] / floor_fit["marginal_us_per_packet"]
            versus = f"; the SFU's is {times:.2f}x that"
        lines.append(
            f"floor (a minimal forwarder: one SRTP protect and one sendto per packet and "
            f"subscriber, nothing else): {floor_fit['marginal_us_per_packet']:.1f} µs per extra "
            f"packet (r² {_fmt(floor_fit['r2'], '.3f')}){versus}"
        )
    pairs = floor_ratios(results)
    if pairs:
        lines.append(
            "SFU CPU / floor CPU: "
            + ", ".join(
                f"{p['name']} {_fmt(p['sfu_cpu_percent'], '.1f')} % / "
                f"{_fmt(p['floor_cpu_percent'], '.1f')} % = {_fmt(p['ratio'], '.2f')}x"
                for p in pairs
            )
        )
    read = [
        (r["name"], r["read_latency_ms"])
        for r in results
        if not r.get("error") and (r.get("read_latency_ms") or {}).get("samples")
    ]
    if read:
        lines.append(
            "latency p50/p99 ms as the load processes read the packets (their own queueing "
            "added; the table's is to the subscriber's socket): "
            + ", ".join(f"{name} {d['p50']:.1f}/{d['p99']:.1f}" for name, d in read)
        )
    lines.extend(_data_fanout_lines(results))
    late = [(r["name"], r["late_join_ms"]) for r in results if r.get("late_join_ms")]
    if late:
        lines.append(
            "join into the running room (one more subscriber, alone, after the window; "
            "WebSocket open to first packet/first whole frame, ms): "
            + ", ".join(
                f"{name} {j['error']}"
                if j.get("error")
                else f"{name} {_fmt(j.get('first_packet'))}/{_fmt(j.get('first_frame'))}"
                for name, j in late
            )
        )
    for ratio in ratios:
        cpu = ratio["cpu_ratio"]
        per_packet = ratio["us_per_packet_ratio"]
        lines.append(
            f"baseline (aiortc MediaRelay, re-encoding) at fanout-{ratio['n']}: server CPU "
            f"{_fmt(ratio['baseline_cpu_percent'], '.1f')} % vs {_fmt(ratio['sfu_cpu_percent'], '.1f')} % "
            f"-> {_fmt(cpu, '.1f')}x; µs/packet {_fmt(ratio['baseline_us_per_packet'], '.1f')} vs "
            f"{_fmt(ratio['sfu_us_per_packet'], '.1f')} -> {_fmt(per_packet, '.1f')}x; loss "
            f"{_fmt(ratio['baseline_loss_percent'], '.2f')} % vs {_fmt(ratio['sfu_loss_percent'], '.2f')} %"
        )
    # The voice search holds its room on one worker: only the video search can scale.
    capacities = {
        r["workers"]: r["last_good_subscribers"]
        for r in results
        if r.get("name") == "capacity" and not r.get("error") and r.get("workers")
    }
    if len(capacities) > 1:
        low, high = min(capacities), max(capacities)
        scale = capacities[high] / capacities[low] if capacities[low] else None
        lines.append(
            f"capacity scaling: {capacities[low]} subscribers with {low} worker(s), "
            f"{capacities[high]} with {high} -> {_fmt(scale, '.2f')}x"
        )
    for r in results:
        if r.get("family") == "capacity" and not r.get("error"):
            lines.append(_capacity_line(r))
        for warning in _warnings(r):
            lines.append(f"{r['name']}: {warning}")
        if r.get("join_failures"):
            lines.append(f"{r['name']}: {r['join_failures']} clients failed to join")
        if r.get("server_exited"):
            lines.append(f"{r['name']}: the server exited during the run")
    return "\n".join(lines)


def _capacity_line(r: dict[str, Any]) -> str:
    audio = r.get("subscriber_kind") == "audio"
    who = (
        f"{r['last_good_subscribers']} audio-only listeners of one speaker"
        if audio
        else f"{r['last_good_subscribers']} subscribers of one publisher"
    )
    where = "in one router on one worker" if r.get("one_router") else "in one room"
    line = (
        f"{r['name']}: {who} ({r.get('consumer_streams')} consumer streams) {where}, "
        f"with loss <= {r['loss_limit_percent']:.0f} % and latency p50 <= "
        f"{r['latency_limit_ms']:.0f} ms; stopped: {r['stopped_because']}"
    )
    if r.get("last_good_subscribers"):
        line += (
            f"; at that step the busiest media worker took "
            f"{_fmt(r.get('busiest_worker_cpu_percent'), '.1f')} % of a core, the server "
            f"{_fmt(r.get('server_cpu_percent'), '.1f')} %, the load processes "
            f"{_fmt(r.get('clients_cpu_percent'), '.0f')} %"
        )
    return line


def _warnings(r: dict[str, Any]) -> list[str]:
    """What makes a scenario's figures measure the machine rather than the server."""
    if r.get("error") or r.get("family") == "capacity":
        return []
    warnings = []
    latency = (r.get("latency_ms") or {}).get("p50")
    sent = r.get("publisher_packets_per_s")
    received = r.get("packets_in_per_s")
    if latency is not None and latency > 250:
        warnings.append(
            f"the server fell behind: packets waited {latency / 1000:.1f} s (p50) in its socket "
            "buffers instead of being dropped"
        )
    elif sent and received is not None and received < 0.9 * sent:
        warnings.append(
            f"the server read {received:.0f} of the {sent:.0f} packets/s sent to it: it fell behind"
        )
    wait = r.get("server_cpu_wait_percent")
    if wait is not None and wait > 30:
        warnings.append(
            f"the server waited for a CPU {wait:.0f} % of the window (a busy machine: noisy figures)"
        )
    lag = r.get("publisher_lag_s")
    if lag is not None and lag > 0.5:
        warnings.append(f"publishers ran up to {lag:.1f} s late (their load process lacked CPU)")
    return warnings


class Progress:
    """One status line on stderr: a bar over the scenarios, the current one's phase."""

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.enabled and self.stream.isatty()
        self.index = 0
        self.name = ""
        self._last_phase = ""
        self._started = time.monotonic()

    def start(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self._last_phase = ""
        self.phase("starting")

    def phase(self, text: str, fraction: float | None = None) -> None:
        if not self.enabled:
            return
        done = (self.index + (fraction or 0.0)) / self.total
        filled = int(done * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        elapsed = time.monotonic() - self._started
        line = f"[{bar}] {self.index + 1}/{self.total} {self.name}: {text}  ({elapsed:.0f} s)"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line[:160])
            self.stream.flush()
        else:
            # Without a terminal: one line per phase, not per tick.
            phase = text.split(" ", maxsplit=1)[0]
            if phase != self._last_phase:
                self._last_phase = phase
                self.stream.write(line + "\n")
                self.stream.flush()

    def done(self, summary: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(f"{self.name}: {summary}\n")
        self.stream.flush()
