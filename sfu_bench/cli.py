"""``sfu bench`` / ``python -m sfu_bench``: run benchmark scenarios and report.

Results: a table on stdout (on stderr with ``--json -``), progress on
stderr, ``--json PATH`` for the numbers, ``--plot PATH`` for a PNG of server
CPU against forwarded packets/s, ``--profile PATH`` for cProfile stats of
the server.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import pstats
import shutil
import sys
from pathlib import Path
from typing import Any, TextIO

from sfu.media.fastpath import NATIVE_RECEIVE, NATIVE_SEND

from .load import NATIVE_COUNTER

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Load the SFU with cheap clients on 127.0.0.1 and measure it: packets/s in and
out, server CPU (from /proc/<pid>/stat, with its idle baseline), server CPU
per forwarded packet, loss, added latency, join time and server memory per
peer. Each scenario starts its own server process (python -m sfu) on free
loopback ports unless --url names a running one. Publishers loop a VP8 + Opus
clip encoded once (cached in ~/.cache/sfu-bench); subscribers count packets
and drop them. Every run is bounded in clients and time.
"""

EPILOG = """\
scenarios:
  fanout-N           1 publisher (video + audio, ~140 packets/s) -> N subscribers
  room-N             N participants, everyone publishes and subscribes
  recorded-room-N    room-N with the room recorded ([recording] auto)
  voice-N            1 speaker, N audio-only listeners, N muted (signaling-only) members
  capacity           add subscribers to one publisher until loss > 1 % or latency
                     p50 > 250 ms (or a time/count bound); the last good count
  capacity-voice     the same with audio-only listeners of one speaker, 100 more a
                     step, the room held on one worker: consumer streams per worker
  baseline-fanout-N  the fanout load against an aiortc MediaRelay relay that
                     decodes and re-encodes per subscriber (how it is done today)
  floor-N            the fanout-N traffic through a minimal forwarder (one SRTP
                     protect + one sendto per packet and subscriber, nothing
                     else): what this machine charges for the traffic alone
  data-fanout-N      1 sender of 200-byte data messages (100/s) -> N receivers over
                     SCTP; with N >= 10 also the highest rate without loss
  families for --scenarios: fanout (1,4,8,16,32), room (4,8), voice (50,200),
  capacity (capacity, capacity-voice), baseline (1,4,8), floor (1,4,8,16,32),
  data (data-fanout-1, data-fanout-10), recording (room-4, recorded-room-4)

examples:
  sfu bench --quick                              fanout-1,4,8, room-4, baseline-fanout-4
  sfu bench                                      the full set (about 16 min on 2 cores)
  sfu bench --scenario fanout-8 --duration 10
  sfu bench --scenarios fanout,baseline --json out.json --plot cpu.png
  sfu bench --scenario fanout-16 --profile server.prof
"""


def build_parser(prog: str = "sfu bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    choose = parser.add_argument_group("what to run")
    choose.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="one scenario, e.g. fanout-8 (repeatable)",
    )
    choose.add_argument(
        "--scenarios", metavar="LIST", help="comma-separated names or families, e.g. fanout,room-4"
    )
    choose.add_argument(
        "--quick",
        action="store_true",
        help="a small, short set: fanout-1,4,8, room-4, baseline-fanout-4",
    )
    timing = parser.add_argument_group("timing")
    timing.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="seconds of the measuring window per scenario (default 10, 4 with --quick)",
    )
    timing.add_argument(
        "--warmup",
        type=float,
        metavar="S",
        help="seconds after every subscriber gets media (default 2)",
    )
    timing.add_argument(
        "--capacity-seconds",
        type=float,
        default=180.0,
        metavar="S",
        help="time bound of each capacity search (default 180)",
    )
    timing.add_argument(
        "--max-subscribers",
        type=int,
        default=256,
        metavar="N",
        help="subscriber bound of the capacity search (default 256)",
    )
    timing.add_argument(
        "--max-listeners",
        type=int,
        default=1000,
        metavar="N",
        help="listener bound of the capacity-voice search (default 1000)",
    )
    target = parser.add_argument_group("server")
    target.add_argument(
        "--url",
        metavar="URL",
        help="load a running SFU (ws://127.0.0.1:PORT) instead of starting one per scenario",
    )
    target.add_argument(
        "--server-pid",
        type=int,
        metavar="PID",
        help="with --url: the server's process id, to measure its CPU and memory",
    )
    target.add_argument(
        "--workers",
        default="0",
        metavar="LIST",
        help="media worker processes of the server (0: one per CPU); a list such as 1,2 runs "
        "every scenario once per count, to show how the server scales",
    )
    target.add_argument(
        "--profile",
        type=Path,
        metavar="PATH",
        help="run the server under cProfile, write its stats to PATH and print the top entries",
    )
    target.add_argument("--top", type=int, default=15, metavar="N", help="profile entries to print")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--json", metavar="PATH", help="write the results as JSON to PATH ('-': stdout)"
    )
    output.add_argument(
        "--plot", type=Path, metavar="PATH", help="write a PNG of server CPU against packets/s"
    )
    output.add_argument(
        "--workdir", type=Path, metavar="DIR", help="keep configs and server logs in DIR"
    )
    output.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m sfu_bench") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)

    from .scenarios import DEFAULT_SCENARIOS, QUICK_SCENARIOS, expand_scenarios

    requested = list(args.scenario)
    if args.scenarios:
        requested.append(args.scenarios)
    if not requested:
        requested = QUICK_SCENARIOS if args.quick else DEFAULT_SCENARIOS
    try:
        scenarios = expand_scenarios(requested)
    except ValueError as exc:
        parser.error(str(exc))
    if not scenarios:
        parser.error("no scenario to run")
    if args.server_pid is not None and not args.url:
        parser.error("--server-pid goes with --url")
    if args.url and not args.url.startswith(("ws://127.0.0.1", "ws://localhost", "ws://[::1]")):
        parser.error(
            "--url must be a ws:// URL on this machine (127.0.0.1): the benchmark stays on loopback"
        )
    if args.profile and args.url:
        parser.error("--profile starts its own server: not with --url")
    try:
        args.worker_counts = [int(part) for part in args.workers.split(",") if part.strip()]
    except ValueError:
        parser.error("--workers takes counts such as 2 or 1,2")
    if not args.worker_counts or not all(0 <= n <= 64 for n in args.worker_counts):
        parser.error("--workers takes counts within 0..64")
    if args.duration is not None and not 1 <= args.duration <= 600:
        parser.error("--duration must be within 1..600 seconds")
    if not 1 <= args.max_subscribers <= 1000:
        parser.error("--max-subscribers must be within 1..1000")
    if not 1 <= args.max_listeners <= 2000:
        parser.error("--max-listeners must be within 1..2000")
    if not 5 <= args.capacity_seconds <= 900:
        parser.error("--capacity-seconds must be within 5..900")
    return _run(args, scenarios)


def _settings(args: argparse.Namespace) -> Any:
    from .scenarios import Settings

    settings = Settings()
    if args.quick:
        settings.duration, settings.warmup, settings.idle_seconds = 4.0, 1.5, 1.0
        settings.capacity_seconds = min(args.capacity_seconds, 45.0)
    else:
        settings.capacity_seconds = args.capacity_seconds
    if args.duration is not None:
        settings.duration = args.duration
    if args.warmup is not None:
        settings.warmup = max(0.0, args.warmup)
    settings.capacity_max_subscribers = args.max_subscribers
    settings.capacity_max_listeners = args.max_listeners
    settings.url = args.url
    settings.server_pid = args.server_pid
    settings.workdir = args.workdir
    return settings


def _profile_path(
    profile: Path | None, target_kind: str, label: str, *, several: bool
) -> Path | None:
    """Where the server profile of one run goes (None: not profiled); with
    several SFU runs, one file each, named after the run."""
    if profile is None or target_kind != "sfu":
        return None
    if several:
        return profile.with_name(f"{profile.name}.{label}")
    return profile


def _run(args: argparse.Namespace, scenarios: list[Any]) -> int:
    from .clip import ClipSpec, load_or_encode_clip
    from .report import (
        Progress,
        baseline_ratios,
        fanout_fit,
        floor_ratios,
        format_summary,
        format_table,
    )
    from .scenarios import Runner
    from .target import make_workdir

    settings = _settings(args)
    keep_workdir = settings.workdir is not None
    if settings.workdir is None:
        settings.workdir = make_workdir()
    progress = Progress(len(scenarios), enabled=not args.no_progress)
    out: TextIO = sys.stderr if args.json == "-" else sys.stdout

    progress.name = "clip"
    progress.phase("encoding the clip (once; then cached)")
    clip_spec = ClipSpec()
    clip_path = load_or_encode_clip(clip_spec)

    sfu_scenarios = [s for s in scenarios if s.target_kind == "sfu"]
    counts: list[int] = args.worker_counts
    # Each SFU scenario once per worker count; the baseline has no workers.
    runs = [
        (scenario, count)
        for scenario in scenarios
        for count in (counts if scenario.target_kind == "sfu" else counts[:1])
    ]
    progress.total = len(runs)
    runner = Runner(settings, clip_path, progress)
    results: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    load_before = _loadavg()
    started = datetime.datetime.now(datetime.UTC)
    errors = 0
    try:
        for index, (scenario, count) in enumerate(runs):
            label = f"{scenario.name}@{count}w" if len(counts) > 1 else scenario.name
            progress.start(index, label)
            profile_path = _profile_path(
                args.profile,
                scenario.target_kind,
                label,
                several=len(sfu_scenarios) > 1 or len(counts) > 1,
            )
            settings.profile = profile_path
            settings.workers = count
            result = runner.run(scenario)
            result["name"] = label
            if scenario.target_kind == "sfu":
                result["workers"] = count or os.cpu_count() or 1
            if profile_path is not None:
                result["profiled"] = True
                if profile_path.exists():
                    profiles.append(
                        {
                            "scenario": scenario.name,
                            "path": str(profile_path),
                            "top": _profile_top(profile_path, args.top),
                        }
                    )
            results.append(result)
            errors += bool(result.get("error"))
            progress.done(_short(result))
    except KeyboardInterrupt:
        print("interrupted: reporting what finished", file=sys.stderr)
    finally:
        if not keep_workdir and not errors:
            shutil.rmtree(settings.workdir, ignore_errors=True)
        elif errors:
            print(f"server logs and configs: {settings.workdir}", file=sys.stderr)

    # The fit is over one worker count (the first): a fanout is one room, on one worker.
    first = counts[0] or os.cpu_count() or 1
    fit = fanout_fit([r for r in results if r.get("workers") in (None, first)])
    floor_fit = fanout_fit(results, family="floor")
    ratios = baseline_ratios(results)
    print(_header(clip_spec, settings, load_before), file=out)
    print(format_table(results), file=out)
    summary = format_summary(results, fit, ratios, floor_fit)
    if summary:
        print(file=out)
        print(summary, file=out)
    for profile in profiles:
        print(file=out)
        print(
            f"server profile of {profile['scenario']} over the measuring window (cProfile, CPU "
            f"time of the main thread, by own time; {profile['path']}; the CPU figures above "
            "include the profiler's overhead):",
            file=out,
        )
        print(_format_profile(profile["top"]), file=out)

    document = {
        "version": 1,
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
        },
        "settings": {
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
            "idle_s": settings.idle_seconds,
            "url": settings.url,
            "quick": bool(args.quick),
            # The consumers' send in C (sfu.media._native), in the servers and
            # the floor this command starts; SFU_NATIVE_SEND=0 turns it off.
            "native_send": NATIVE_SEND,
            # The servers' receive path in C; SFU_NATIVE_RECEIVE=0 turns it off.
            "native_receive": NATIVE_RECEIVE,
            # The load subscribers read and count in C (sfu_bench._counter);
            # SFU_BENCH_NATIVE_COUNTER=0 turns it off.
            "native_counter": NATIVE_COUNTER,
        },
        "clip": {**clip_spec.__dict__, "path": str(clip_path)},
        "scenarios": results,
        "fanout_fit": fit,
        "floor_fit": floor_fit,
        "floor_ratios": floor_ratios(results),
        "baseline_ratios": ratios,
        "profiles": profiles,
        "method": METHOD,
    }
    if args.json:
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if args.plot:
        try:
            from .plot import plot

            plot(results, fit, args.plot)
        except ImportError:
            print("sfu bench: --plot needs matplotlib (pip install 'sfu[bench]')", file=sys.stderr)
            return 2
    return 1 if errors else 0


METHOD = {
    "packets": "rtpPacketsReceived/rtpPacketsSent of the server's GET /health, over the window",
    "server_cpu": "utime+stime of /proc/<pid>/stat over the window; idle: the same before any client joined",
    "server_cpu_wait": (
        "time the server's main thread was runnable but had no CPU (/proc/<pid>/schedstat), "
        "in % of the window: high on a busy shared machine, where every figure is then noisy"
    ),
    "us_per_packet": "(server CPU in the window - idle CPU rate x window) / packets the server sent",
    "marginal_us_per_packet": "slope of least squares of server CPU against sent packets/s over the fanout runs",
    "floor": (
        "floor-N: the fanout-N load through a minimal forwarder (uvloop; per packet and "
        "subscriber one libsrtp protect and one sendto from that subscriber's socket, through "
        "the consumers' own send: the C one when settings.native_send; nothing else) instead "
        "of the SFU; its CPU is what this machine charges for the traffic alone"
    ),
    "loss": "subscribers' media packets received / expected (extended sequence numbers), over the window",
    "latency": (
        "publisher: CLOCK_MONOTONIC when the first packet of a frame goes to SRTP, keyed by "
        "(producer, RTP timestamp); subscriber: CLOCK_MONOTONIC when the first packet of that "
        "frame comes off its UDP socket; the SFU keeps a consumer's RTP timestamps equal to its "
        "producer's while it does not resync. Includes both clients' own queueing."
    ),
    "join": "subscriber: WebSocket open to its first RTP packet (join_ms) and first whole frame",
    "rss_per_peer": "(server RSS at the end of the window - idle RSS) / peers",
}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _header(clip: Any, settings: Any, load: list[float] | None) -> str:
    return (
        f"sfu bench: {os.cpu_count()} CPUs, load average {load[0] if load else '?'} at start; "
        f"window {settings.duration:.0f} s after {settings.warmup:.0f} s warm-up; clip "
        f"{clip.width}x{clip.height} VP8 {clip.fps} fps ~{clip.video_bitrate // 1000} kbit/s + Opus 20 ms; "
        f"{_native_paths()}; load subscribers count in "
        f"{'C (sfu_bench._counter)' if NATIVE_COUNTER else 'Python'}"
    )


def _native_paths() -> str:
    if not NATIVE_SEND:
        return "packets go through Python (SFU_NATIVE_SEND=0 or not built)"
    if not NATIVE_RECEIVE:
        return "consumers send in C (sfu.media._native), packets are received in Python (SFU_NATIVE_RECEIVE=0)"
    return "packets are received and sent in C (sfu.media._native)"


def _short(result: dict[str, Any]) -> str:
    if result.get("error"):
        return "error: " + str(result["error"]).splitlines()[0]
    parts = []
    if result.get("family") == "capacity":
        parts.append(f"{result.get('consumer_streams')} consumer streams")
    if result.get("server_cpu_percent") is not None:
        parts.append(f"CPU {result['server_cpu_percent']:.1f} %")
    if result.get("packets_out_per_s") is not None:
        parts.append(f"out {result['packets_out_per_s']:.0f} pkt/s")
    if result.get("us_per_packet") is not None:
        parts.append(f"{result['us_per_packet']:.1f} µs/pkt")
    if result.get("loss_percent") is not None:
        parts.append(f"loss {result['loss_percent']:.2f} %")
    parts.append(f"{result.get('wall_seconds', 0):.0f} s")
    return ", ".join(parts)


def _profile_top(path: Path, count: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(str(path))
    entries = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in raw.values()) or 1.0
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in sorted(
        raw.items(), key=lambda item: item[1][2], reverse=True
    )[:count]:
        entries.append(
            {
                "function": f"{_short_path(filename)}:{line}({name})",
                "calls": ncalls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
                "percent": round(100 * tottime / total, 1),
            }
        )
    return entries


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", "/sfu/", "lib/python"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return ("sfu/" + tail) if marker == "/sfu/" else tail
    return filename


def _format_profile(entries: list[dict[str, Any]]) -> str:
    lines = [f"{'own s':>8} {'own %':>6} {'cum s':>8} {'calls':>10}  function"]
    for e in entries:
        lines.append(
            f"{e['tottime_s']:8.3f} {e['percent']:6.1f} {e['cumtime_s']:8.3f} {e['calls']:10d}  {e['function']}"
        )
    return "\n".join(lines)
