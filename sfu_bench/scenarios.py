"""Benchmark scenarios: who joins, how the load is spread over processes, what is measured.

Every scenario runs against a fresh server process (unless ``--url``):

1. the server's idle CPU is measured first (``idle_seconds``);
2. load processes start, and clients join in phases (publishers first);
3. the coordinator waits until every subscriber receives every stream it
   expects (bounded), then for ``warmup`` seconds;
4. the steady window: ``duration`` seconds between two readings of
   ``/health``, ``/proc/<pid>/stat`` and the load processes' counters;
5. everything is closed; the server is stopped.

Scenarios:

- ``fanout-N``: one publisher (VP8 + Opus clip), N subscribers;
- ``room-N``: N participants who all publish and subscribe;
- ``voice-N``: one speaker (Opus), N audio-only listeners, and N muted
  members (joined over signaling only: no transports, no media);
- ``capacity``: one publisher, subscribers added in steps until a step's
  window has loss above 1 % or median added latency above 250 ms (the server
  falls behind), or a time or count bound; reports the last good count;
- ``capacity-voice``: the same search with one speaker and audio-only
  listeners, 100 more a step, in one router (the room never spreads to
  another worker): how many consumer streams one worker carries;
- ``recorded-room-N``: ``room-N`` with the room recorded (``[recording] auto``): beside
  ``room-N``, what recording costs per track (the recorder is one of the server's processes);
- ``baseline-fanout-N``: the fanout load against the aiortc MediaRelay relay
  (:mod:`sfu_bench.baseline`), which decodes and re-encodes per subscriber.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .floor import run_floor
from .load import ClientSpec
from .report import Progress, distribution
from .target import Target, make_workdir, remote_sfu, start_baseline, start_sfu
from .worker import WorkerError, WorkerHandle, start_workers

__all__ = [
    "DEFAULT_SCENARIOS",
    "FAMILIES",
    "QUICK_SCENARIOS",
    "Runner",
    "Scenario",
    "Settings",
    "expand_scenarios",
    "parse_scenario",
]

FAMILIES: dict[str, list[str]] = {
    "fanout": [f"fanout-{n}" for n in (1, 4, 8, 16, 32)],
    "room": ["room-4", "room-8"],
    "recording": ["room-4", "recorded-room-4"],
    "voice": ["voice-50", "voice-200"],
    "capacity": ["capacity", "capacity-voice"],
    "baseline": [f"baseline-fanout-{n}" for n in (1, 4, 8)],
    "floor": [f"floor-{n}" for n in (1, 4, 8, 16, 32)],
    "data": ["data-fanout-1", "data-fanout-10"],
}
DEFAULT_SCENARIOS = [name for family in FAMILIES.values() for name in family]
QUICK_SCENARIOS = ["fanout-1", "fanout-4", "fanout-8", "room-4", "baseline-fanout-4"]

_NAME = re.compile(r"^(fanout|room|recorded-room|voice|baseline-fanout|floor|data-fanout)-(\d+)$")
MAX_N = {
    "fanout": 256,
    "room": 16,
    "recorded-room": 16,
    "voice": 400,
    "baseline-fanout": 16,
    "floor": 256,
    "data-fanout": 50,
}
# data-fanout-N: messages per second of the steady window (see sfu_bench.data_fanout).
DATA_RATE = 100.0

JOIN_TIMEOUT_PER_CLIENT = 45.0
READY_TIMEOUT = 40.0
LOSS_LIMIT_PERCENT = 1.0
LATENCY_LIMIT_MS = 250.0


@dataclass(frozen=True)
class Scenario:
    name: str
    family: str  # fanout, room, voice, capacity, baseline-fanout, floor
    n: int
    recorded: bool = False  # the server records the room (recorded-room-N)

    @property
    def target_kind(self) -> str:
        return {"baseline-fanout": "baseline", "floor": "floor"}.get(self.family, "sfu")


def parse_scenario(name: str) -> Scenario:
    name = name.strip()
    if name in ("capacity", "capacity-voice"):
        return Scenario(name, "capacity", 0)
    match = _NAME.match(name)
    if not match:
        raise ValueError(
            f"unknown scenario {name!r}: expected fanout-N, room-N, recorded-room-N, voice-N, "
            "baseline-fanout-N, floor-N, data-fanout-N, capacity or capacity-voice"
        )
    family, n = match.group(1), int(match.group(2))
    low = 2 if family in ("room", "recorded-room") else 1
    if not low <= n <= MAX_N[family]:
        raise ValueError(f"{name}: N must be within {low}..{MAX_N[family]}")
    if family == "recorded-room":
        return Scenario(name, "room", n, recorded=True)
    return Scenario(name, family, n)


def expand_scenarios(items: Iterable[str]) -> list[Scenario]:
    """Names and family names (``fanout``, ``room``, ``voice``, ``capacity``, ``baseline``,
    ``floor``)."""
    names: list[str] = []
    for item in items:
        for part in item.split(","):
            name = part.strip()
            if not name:
                continue
            names.extend(FAMILIES.get(name, [name]))
    seen: dict[str, Scenario] = {}
    for name in names:
        scenario = parse_scenario(name)
        seen.setdefault(scenario.name, scenario)
    return list(seen.values())


@dataclass
class Settings:
    duration: float = 10.0  # the steady window, seconds
    warmup: float = 2.0
    idle_seconds: float = 1.5
    subscribers_per_process: int = 16
    listeners_per_process: int = 50
    participants_per_process: int = 4
    join_concurrency: int = 4
    capacity_seconds: float = 180.0
    capacity_window: float = 4.0
    capacity_max_subscribers: int = 256
    capacity_max_listeners: int = 1000
    # Bigger load processes cost less per listener (one wake-up reads more sockets):
    # the voice search leaves the server more of the machine.
    capacity_listeners_per_process: int = 200
    capacity_listener_step: int = 100
    url: str | None = None
    server_pid: int | None = None
    profile: Path | None = None
    workdir: Path | None = None
    workers: int = 0  # media worker processes of a started server (0: one per CPU)


@dataclass
class _Plan:
    """Clients per load process, and the order in which they join."""

    workers: int
    # Each phase: (worker index, clients) pairs, joined at once; phases one after another.
    phases: list[list[tuple[int, list[ClientSpec]]]] = field(default_factory=list)
    publishers: int = 0
    subscribers: int = 0
    muted: int = 0


def _late_joiner(plan: _Plan) -> tuple[int, ClientSpec] | None:
    """One more of the plan's last subscriber, in its load process, to join the full room."""
    for phase in reversed(plan.phases):
        for index, clients in reversed(phase):
            for spec in reversed(clients):
                if spec.consume and spec.expect_streams > 0:
                    return index, replace(spec, peer_id=f"{spec.peer_id}-late", measure_join=True)
    return None


def _split(items: list[ClientSpec], size: int) -> list[list[ClientSpec]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def _plan(scenario: Scenario, settings: Settings, room: str) -> _Plan:
    family, n = scenario.family, scenario.n
    if family in ("fanout", "baseline-fanout"):
        relay = family == "baseline-fanout"
        publisher = ClientSpec(
            "relay-publisher" if relay else "sfu", "pub", room, audio=True, video=True
        )
        subscribers = [
            ClientSpec(
                "relay-subscriber" if relay else "sfu",
                f"sub{i}",
                room,
                consume=True,
                expect_streams=2,
            )
            for i in range(n)
        ]
        groups = _split(subscribers, settings.subscribers_per_process)
        plan = _Plan(1 + len(groups), publishers=1, subscribers=n)
        plan.phases = [[(0, [publisher])], [(1 + i, g) for i, g in enumerate(groups)]]
        return plan
    if family == "room":
        people = [
            ClientSpec(
                "sfu",
                f"p{i}",
                room,
                audio=True,
                video=True,
                consume=True,
                expect_streams=2 * (n - 1),
                measure_join=i > 0,
            )
            for i in range(n)
        ]
        # The first one alone, so that the others' join times mean something.
        groups = _split(people[1:], settings.participants_per_process)
        plan = _Plan(max(1, len(groups)), publishers=n, subscribers=n)
        plan.phases = [[(0, people[:1])], [(i, g) for i, g in enumerate(groups)]]
        return plan
    if family == "voice":
        speaker = ClientSpec("sfu", "speaker", room, audio=True)
        listeners = [
            ClientSpec("sfu", f"l{i}", room, consume=True, expect_streams=1) for i in range(n)
        ]
        muted = [ClientSpec("muted", f"m{i}", room) for i in range(n)]
        groups = _split(listeners, settings.listeners_per_process)
        plan = _Plan(2 + len(groups), publishers=1, subscribers=n, muted=n)
        plan.phases = [
            [(0, [speaker])],
            [(1, muted)] + [(2 + i, g) for i, g in enumerate(groups)],
        ]
        return plan
    raise ValueError(f"no plan for {scenario.name}")


@dataclass
class _Reading:
    t: float
    health: dict[str, Any]
    cpu: float | None
    wait: float | None
    rss: int | None
    snapshots: list[dict[str, Any]]
    worker_cpu: dict[int, float] = field(default_factory=dict)  # media workers, by pid


@dataclass(frozen=True)
class _Search:
    """What a capacity search adds, step by step, to one publisher's room."""

    publisher: ClientSpec
    subscriber: str  # peer id prefix
    video: bool  # subscribers get the publisher's video and audio, or its audio alone
    sizes: list[int]
    bound: int
    per_process: int
    one_router: bool  # keep the room on one worker
    join_concurrency: int

    def spread(
        self, new: list[ClientSpec], first: int, processes: int
    ) -> list[tuple[int, list[ClientSpec]]]:
        """(load process index, clients) for a step's new subscribers: the
        ``first``-th of the search and those after it.

        Video subscribers go round-robin over the processes. Listeners fill one
        process after the other: the server sends a packet to its consumers in
        the order they joined, so each process gets one run of consecutive
        packets, read in one wake-up, instead of every n-th packet of the run.
        """
        groups: dict[int, list[ClientSpec]] = {}
        for index, spec in enumerate(new, first):
            w = index % processes if self.video else min(index // self.per_process, processes - 1)
            groups.setdefault(1 + w, []).append(spec)
        return sorted(groups.items())

    @property
    def noun(self) -> str:
        return "subscribers" if self.video else "listeners"

    @property
    def streams_per_subscriber(self) -> int:
        return 2 if self.video else 1


class Runner:
    """Runs scenarios one after another; each returns a JSON-ready dict."""

    def __init__(self, settings: Settings, clip_path: Path, progress: Progress) -> None:
        self.settings = settings
        self.clip_path = clip_path
        self.progress = progress
        self.workdir = settings.workdir or make_workdir()
        self._run_id = f"{int(time.time()) % 100000:05d}"

    # --- plumbing --------------------------------------------------------------

    def _start_target(self, scenario: Scenario) -> Target:
        workdir = self.workdir / scenario.name
        if scenario.target_kind == "baseline":
            return start_baseline(workdir)
        if self.settings.url:
            return remote_sfu(self.settings.url, self.settings.server_pid)
        workdir = workdir.with_name(f"{workdir.name}-{self.settings.workers}w")
        return start_sfu(
            workdir,
            profile=self.settings.profile,
            workers=self.settings.workers,
            max_peers_per_router=0 if scenario.name == "capacity-voice" else None,
            recording_directory=workdir / "recordings" if scenario.recorded else None,
        )

    def _worker_config(
        self, target: Target, max_seconds: float, concurrency: int
    ) -> dict[str, Any]:
        return {
            "url": target.url,
            "clip_path": str(self.clip_path),
            "max_seconds": max_seconds,
            "join_concurrency": concurrency,
        }

    def _sleep(self, seconds: float, label: str) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.progress.phase(
                f"{label} {seconds - left:4.1f}/{seconds:.0f} s", 1 - left / seconds
            )
            time.sleep(min(0.25, left))

    def _measure_idle(self, target: Target) -> tuple[float | None, int | None]:
        """Server CPU % and RSS with nobody connected."""
        self.progress.phase("idle baseline")
        cpu0, t0 = target.cpu_seconds(), time.monotonic()
        time.sleep(self.settings.idle_seconds)
        cpu1, t1 = target.cpu_seconds(), time.monotonic()
        if cpu0 is None or cpu1 is None:
            return None, None
        return (cpu1 - cpu0) / (t1 - t0) * 100, target.rss_bytes()

    def _join(
        self, workers: list[WorkerHandle], phase: list[tuple[int, list[ClientSpec]]]
    ) -> tuple[int, int]:
        pending = []
        total = sum(len(clients) for _, clients in phase)
        for index, clients in phase:
            if clients:
                request = workers[index].send("join", clients=[asdict(c) for c in clients])
                pending.append((workers[index], request, len(clients)))
        ok = failed = 0
        self.progress.phase(f"joining {total} clients")
        for worker, request, count in pending:
            rounds = math.ceil(count / self.settings.join_concurrency)
            reply = worker.wait(request, JOIN_TIMEOUT_PER_CLIENT * rounds + 30)
            ok += reply["ok"]
            failed += reply["failed"]
        return ok, failed

    def _late_join(self, workers: list[WorkerHandle], plan: _Plan) -> dict[str, Any] | None:
        """Join one more subscriber into the full room, alone, after the window.

        The table's join times are those of clients joining by the dozen,
        queueing behind each other in their load processes and in the server;
        this one is what a user entering the running room waits: from opening
        the WebSocket to the first packet and the first whole frame.
        """
        located = _late_joiner(plan)
        if located is None:
            return None
        index, spec = located
        self.progress.phase("one late joiner")
        reply = workers[index].request(
            "join", timeout=JOIN_TIMEOUT_PER_CLIENT + 30, clients=[asdict(spec)]
        )
        if not reply["ok"]:
            return {"peer": spec.peer_id, "error": "failed to join"}
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            answer = workers[index].request("join_time", peer=spec.peer_id)
            if answer["ready"]:
                first, frame = answer["join"]
                return {"peer": spec.peer_id, "first_packet": first, "first_frame": frame}
            time.sleep(0.1)
        return {"peer": spec.peer_id, "error": f"no media in {READY_TIMEOUT:.0f} s"}

    def _snapshots(self, workers: list[WorkerHandle], **data: Any) -> list[dict[str, Any]]:
        requests = [(w, w.send("snapshot", **data)) for w in workers]
        return [w.wait(r, 30) for w, r in requests]

    def _wait_ready(self, workers: list[WorkerHandle], subscribers: int) -> int:
        deadline = time.monotonic() + READY_TIMEOUT
        ready = 0
        while True:
            snaps = self._snapshots(workers)
            ready = sum(s["ready"] for s in snaps)
            self.progress.phase(
                f"waiting for media {ready}/{subscribers}", ready / max(1, subscribers)
            )
            if ready >= subscribers or time.monotonic() > deadline:
                return ready
            time.sleep(0.25)

    def _read(
        self, target: Target, workers: list[WorkerHandle], opening: bool, **data: Any
    ) -> _Reading:
        """Counters of the load processes and the server. The server's CPU is read right
        after its ``/health`` when the window opens and right before it when the window
        closes, so that the bench's own polls (which walk every transport) are not counted."""
        snapshots = self._snapshots(workers, **data)
        health = target.health() if opening else {}
        reading = _Reading(
            time.monotonic(),
            health,
            target.cpu_seconds(),
            target.wait_seconds(),
            target.rss_bytes(),
            snapshots,
            target.worker_cpu_seconds(),
        )
        if not opening:
            reading.health = target.health()
        return reading

    def _window(
        self, target: Target, workers: list[WorkerHandle], seconds: float
    ) -> tuple[_Reading, _Reading]:
        profiling = self.settings.profile is not None and target.kind == "sfu"
        start = self._read(target, workers, opening=True, record=True)
        if profiling:
            target.signal(signal.SIGUSR1)  # sfu_bench.profile_server: start recording
        self._sleep(seconds, "measuring")
        if profiling:
            target.signal(signal.SIGUSR2)  # stop recording, write the stats
        end = self._read(target, workers, opening=False, record=False)
        return start, end

    @staticmethod
    def _stop_workers(workers: list[WorkerHandle]) -> None:
        requests = []
        for worker in workers:
            try:
                requests.append((worker, worker.send("stop")))
            except WorkerError:
                requests.append((worker, -1))
        for worker, request in requests:
            if request >= 0:
                with contextlib.suppress(WorkerError):  # stopped below either way
                    worker.wait(request, 30)
            worker.stop(1)

    # --- scenarios -------------------------------------------------------------

    def run(self, scenario: Scenario) -> dict[str, Any]:
        started = time.monotonic()
        try:
            if scenario.family == "capacity":
                result = self._run_capacity(scenario)
            elif scenario.family == "floor":
                result = self._run_floor(scenario)
            elif scenario.family == "data-fanout":
                result = self._run_data_fanout(scenario)
            else:
                result = self._run_plan(scenario)
        except Exception as exc:  # one scenario's failure must not lose the others' results
            message = (
                str(exc) if isinstance(exc, WorkerError | RuntimeError | OSError) else repr(exc)
            )
            result = {
                "name": scenario.name,
                "family": scenario.family,
                "n": scenario.n,
                "error": message,
            }
        result["wall_seconds"] = round(time.monotonic() - started, 1)
        return result

    def _run_data_fanout(self, scenario: Scenario) -> dict[str, Any]:
        """One sender, N data receivers; for N >= 10 also the highest clean rate."""
        from .data_fanout import run_data_fanout

        target = self._start_target(scenario)
        try:
            self.progress.phase(f"{scenario.n} data receivers at {DATA_RATE:.0f} msg/s")
            measured = run_data_fanout(
                target,
                self._room(scenario),
                scenario.n,
                rate=DATA_RATE,
                seconds=self.settings.duration,
                search=scenario.n >= 10,
            )
        finally:
            target.stop()
        return {"name": scenario.name, "family": scenario.family, "n": scenario.n, **measured}

    def _room(self, scenario: Scenario) -> str:
        return f"bench-{self._run_id}-{scenario.name}"

    def _run_plan(self, scenario: Scenario) -> dict[str, Any]:
        settings = self.settings
        plan = _plan(scenario, settings, self._room(scenario))
        self.progress.phase("starting server")
        target = self._start_target(scenario)
        try:
            idle_cpu, idle_rss = self._measure_idle(target)
            budget = (
                sum(len(c) for phase in plan.phases for _, c in phase) * 2
                + READY_TIMEOUT
                + settings.warmup
                + settings.duration
                + 120
            )
            self.progress.phase(f"starting {plan.workers} load processes")
            concurrency = 16 if scenario.family == "voice" else settings.join_concurrency
            workers = start_workers(
                [self._worker_config(target, budget, concurrency) for _ in range(plan.workers)]
            )
            try:
                ok = failed = 0
                for phase in plan.phases:
                    o, f = self._join(workers, phase)
                    ok, failed = ok + o, failed + f
                ready = self._wait_ready(workers, plan.subscribers)
                self._sleep(settings.warmup, "warm-up")
                start, end = self._window(target, workers, settings.duration)
                reports = [w.request("report", timeout=60) for w in workers]
                late_join = None
                if scenario.target_kind == "sfu":
                    try:
                        late_join = self._late_join(workers, plan)
                    except WorkerError as exc:  # an extra: it must not lose the window's figures
                        late_join = {"error": str(exc)}
            finally:
                self._stop_workers(workers)
            server_alive = target.alive()
        finally:
            if target.process is not None:
                self.progress.phase("stopping server")
            target.stop()
        result = _metrics(start, end, reports, idle_cpu, idle_rss)
        peers = plan.publishers + plan.subscribers + plan.muted
        if scenario.family == "room":
            peers = scenario.n
        result.update(
            {
                "name": scenario.name,
                "family": scenario.family,
                "n": scenario.n,
                "target": scenario.target_kind,
                "peers": peers,
                "publishers": plan.publishers,
                "subscribers": plan.subscribers,
                "muted": plan.muted,
                "load_processes": plan.workers,
                "joined": ok,
                "join_failures": failed,
                "subscribers_ready": ready,
                "server_exited": not server_alive,
            }
        )
        if result["server_rss_bytes"] is not None and idle_rss is not None and peers:
            result["server_rss_per_peer_bytes"] = int(
                (result["server_rss_bytes"] - idle_rss) / peers
            )
        if late_join is not None:
            result["late_join_ms"] = late_join
        if scenario.family == "baseline-fanout":
            result["latency_ms"] = distribution([])
            result["latency_note"] = "re-encoded: RTP timestamps do not map back to the publisher's"
        return result

    def _run_floor(self, scenario: Scenario) -> dict[str, Any]:
        self.progress.phase(f"minimal forwarder to {scenario.n} subscribers")
        result = _metrics_empty(None)
        result.update(run_floor(scenario.n, self.settings.duration, self.settings.warmup))
        result.update(
            {
                "name": scenario.name,
                "family": scenario.family,
                "n": scenario.n,
                "target": scenario.target_kind,
                "peers": scenario.n + 1,
                "publishers": 1,
                "subscribers": scenario.n,
                "muted": 0,
            }
        )
        return result

    def _search(self, scenario: Scenario, room: str) -> _Search:
        settings = self.settings
        if scenario.name == "capacity-voice":
            bound = settings.capacity_max_listeners
            step = min(settings.capacity_listener_step, max(1, bound // 2))
            return _Search(
                publisher=ClientSpec("sfu", "speaker", room, audio=True),
                subscriber="l",
                video=False,
                sizes=[min(size, bound) for size in range(step, bound + step, step)],
                bound=bound,
                per_process=settings.capacity_listeners_per_process,
                one_router=True,
                join_concurrency=16,  # each step joins in one process
            )
        return _Search(
            publisher=ClientSpec("sfu", "pub", room, audio=True, video=True),
            subscriber="sub",
            video=True,
            sizes=_capacity_sizes(settings.capacity_max_subscribers),
            bound=settings.capacity_max_subscribers,
            per_process=settings.listeners_per_process,
            one_router=False,
            join_concurrency=settings.join_concurrency,
        )

    def _run_capacity(self, scenario: Scenario) -> dict[str, Any]:
        settings = self.settings
        room = self._room(scenario)
        search = self._search(scenario, room)
        self.progress.phase("starting server")
        target = self._start_target(scenario)
        steps: list[dict[str, Any]] = []
        last_good = 0
        reason = f"reached the bound of {search.bound} {search.noun}"
        try:
            idle_cpu, idle_rss = self._measure_idle(target)
            processes = min(
                max(1, math.ceil(search.bound / max(1, search.per_process))),
                4 if search.video else 10,
            )
            budget = settings.capacity_seconds + 240
            self.progress.phase(f"starting {processes + 1} load processes")
            workers = start_workers(
                [
                    self._worker_config(target, budget, search.join_concurrency)
                    for _ in range(processes + 1)
                ]
            )
            try:
                self._join(workers, [(0, [search.publisher])])
                began = time.monotonic()
                count = 0
                for size in search.sizes:
                    if time.monotonic() - began > settings.capacity_seconds:
                        reason = f"reached the time bound of {settings.capacity_seconds:.0f} s"
                        break
                    new = [
                        ClientSpec(
                            "sfu",
                            f"{search.subscriber}{i}",
                            room,
                            consume=True,
                            expect_streams=search.streams_per_subscriber,
                        )
                        for i in range(count, size)
                    ]
                    phase = search.spread(new, count, processes)
                    self.progress.phase(f"{size} {search.noun}: joining")
                    _, failed = self._join(workers, phase)
                    count = size
                    ready = self._wait_ready(workers, count)
                    self._sleep(1.0, f"{size} {search.noun}: settling")
                    start, end = self._window(target, workers, settings.capacity_window)
                    reports = [w.request("report", timeout=60) for w in workers]
                    step = _metrics(start, end, reports, idle_cpu, idle_rss)
                    step.update({"subscribers": size, "ready": ready, "join_failures": failed})
                    step["consumer_streams"] = size * search.streams_per_subscriber
                    if step["server_rss_bytes"] is not None and idle_rss is not None:
                        step["server_rss_per_peer_bytes"] = int(
                            (step["server_rss_bytes"] - idle_rss) / (size + 1)
                        )
                    steps.append(step)
                    problem = _capacity_problem(step, size, ready, failed)
                    if problem:
                        reason = f"at {size} {search.noun}: {problem}"
                        break
                    last_good = size
                    if not target.alive():
                        reason = "the server exited"
                        break
            finally:
                self._stop_workers(workers)
        finally:
            target.stop()
        good = next((s for s in steps if s["subscribers"] == last_good), None)
        result: dict[str, Any] = dict(good) if good else _metrics_empty(idle_cpu)
        result.update(
            {
                "name": scenario.name,
                "family": "capacity",
                "n": last_good,
                "target": "sfu",
                "peers": last_good + 1,
                "publishers": 1,
                "subscribers": last_good,
                "muted": 0,
                "subscriber_kind": "video+audio" if search.video else "audio",
                "one_router": search.one_router,
                "last_good_subscribers": last_good,
                "consumer_streams": last_good * search.streams_per_subscriber,
                "stopped_because": reason,
                "loss_limit_percent": LOSS_LIMIT_PERCENT,
                "latency_limit_ms": LATENCY_LIMIT_MS,
                "steps": [
                    {
                        k: s.get(k)
                        for k in (
                            "subscribers",
                            "consumer_streams",
                            "ready",
                            "join_failures",
                            "packets_in_per_s",
                            "publisher_packets_per_s",
                            "publisher_lag_s",
                            "packets_out_per_s",
                            "subscriber_packets_per_s",
                            "server_cpu_percent",
                            "busiest_worker_cpu_percent",
                            "server_cpu_wait_percent",
                            "clients_cpu_percent",
                            "loss_percent",
                            "latency_ms",
                        )
                    }
                    for s in steps
                ],
            }
        )
        return result


def _capacity_problem(step: dict[str, Any], size: int, ready: int, failed: int) -> str | None:
    """Why a capacity step is not good, or None.

    Loss alone is not enough: the server reads into big socket buffers, so when
    it falls behind, packets wait there for seconds before they are lost.
    """
    loss = step["loss_percent"]
    latency = step["latency_ms"]
    if failed:
        return f"{failed} clients failed to join"
    if ready < size:
        return f"only {ready}/{size} subscribers receive media"
    if loss is None or loss > LOSS_LIMIT_PERCENT:
        return (
            f"loss {loss if loss is not None else float('nan'):.2f} % > {LOSS_LIMIT_PERCENT:.0f} %"
        )
    if not latency["samples"]:
        return "no frame came through within the window (the server fell behind by seconds)"
    if latency["p50"] > LATENCY_LIMIT_MS:
        return f"latency p50 {latency['p50']:.0f} ms > {LATENCY_LIMIT_MS:.0f} ms (the server fell behind)"
    return None


def _capacity_sizes(bound: int) -> list[int]:
    sizes, size = [], 0
    while size < bound:
        size += 8 if size < 32 else 16 if size < 96 else 32
        sizes.append(min(size, bound))
    return sizes


def _delta(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
    return float(b.get(key, 0) or 0) - float(a.get(key, 0) or 0)


def _sum(snaps: list[dict[str, Any]], key: str) -> float:
    return float(sum(s.get(key, 0) or 0 for s in snaps))


def _metrics_empty(idle_cpu: float | None) -> dict[str, Any]:
    return {
        "duration_s": 0.0,
        "packets_in_per_s": None,
        "packets_out_per_s": None,
        "subscriber_packets_per_s": None,
        "publisher_packets_per_s": None,
        "server_cpu_percent": None,
        "server_idle_cpu_percent": idle_cpu,
        "server_cpu_wait_percent": None,
        "us_per_packet": None,
        "loss_percent": None,
        "latency_ms": distribution([]),
        "join_ms": distribution([]),
        "first_frame_ms": distribution([]),
        "server_rss_bytes": None,
        "server_rss_per_peer_bytes": None,
        "busiest_worker_cpu_percent": None,
        "clients_cpu_percent": None,
        "dropped_packets": {},
    }


def _metrics(
    start: _Reading,
    end: _Reading,
    reports: list[dict[str, Any]],
    idle_cpu: float | None,
    idle_rss: int | None,
) -> dict[str, Any]:
    dt = end.t - start.t
    result = _metrics_empty(idle_cpu)
    result["duration_s"] = round(dt, 2)
    packets_out = _delta(start.health, end.health, "rtpPacketsSent")
    result["packets_in_per_s"] = round(
        _delta(start.health, end.health, "rtpPacketsReceived") / dt, 1
    )
    result["packets_out_per_s"] = round(packets_out / dt, 1)
    received = _sum(end.snapshots, "received") - _sum(start.snapshots, "received")
    expected = _sum(end.snapshots, "expected") - _sum(start.snapshots, "expected")
    result["subscriber_packets_per_s"] = round(received / dt, 1)
    result["publisher_packets_per_s"] = round(
        (_sum(end.snapshots, "sent") - _sum(start.snapshots, "sent")) / dt, 1
    )
    if expected > 0:
        result["loss_percent"] = round(max(0.0, 100.0 * (1 - received / expected)), 3)
    if start.cpu is not None and end.cpu is not None:
        cpu = end.cpu - start.cpu
        result["server_cpu_percent"] = round(cpu / dt * 100, 1)
        if packets_out > 0:
            net = cpu - (idle_cpu or 0.0) / 100 * dt
            result["us_per_packet"] = round(max(0.0, net) / packets_out * 1e6, 2)
    worker_cpu = [
        (end.worker_cpu[pid] - start.worker_cpu[pid]) / dt * 100
        for pid in end.worker_cpu
        if pid in start.worker_cpu
    ]
    # One room's router lives on one worker: the busiest is the one that carries it.
    result["busiest_worker_cpu_percent"] = round(max(worker_cpu), 1) if worker_cpu else None
    if start.wait is not None and end.wait is not None:
        # On a shared machine: how long the server's main thread was ready to run but
        # had no CPU. High values mean the figures measure the machine, not the server.
        result["server_cpu_wait_percent"] = round((end.wait - start.wait) / dt * 100, 1)
    result["server_rss_bytes"] = end.rss
    clients_cpu = _sum(end.snapshots, "cpu") - _sum(start.snapshots, "cpu")
    result["clients_cpu_percent"] = round(clients_cpu / dt * 100, 1)
    # Per load process: CPU % and how late its publishers' tracks run (s): a starved
    # publisher sends less than the reference load, whatever the server does.
    result["load_processes_cpu_percent"] = [
        round((b.get("cpu", 0) - a.get("cpu", 0)) / dt * 100, 1)
        for a, b in zip(start.snapshots, end.snapshots, strict=True)
    ]
    result["publisher_track_packets_per_s"] = round(
        (_sum(end.snapshots, "track_packets") - _sum(start.snapshots, "track_packets")) / dt, 1
    )
    result["publisher_lag_s"] = round(
        max((s.get("track_lag", 0.0) for s in end.snapshots), default=0.0), 3
    )
    dropped: dict[str, int] = {}
    before = start.health.get("droppedPackets") or {}
    for reason, count in (end.health.get("droppedPackets") or {}).items():
        diff = int(count) - int(before.get(reason, 0))
        if diff:
            dropped[reason] = diff
    result["dropped_packets"] = dropped
    if reports:
        sent: dict[tuple[str, int], float] = {}
        for report in reports:
            for producer_id, ts, t in report["sent"]:
                sent.setdefault((producer_id, ts), t)
        pairs = [
            (arrival - sent[(producer_id, ts)], read - sent[(producer_id, ts)])
            for report in reports
            for producer_id, ts, arrival, read in report["received"]
            if (producer_id, ts) in sent
        ]
        # Added by the server: to the subscriber's socket. As read by the load
        # process, which adds the time it left the packet waiting there.
        result["latency_ms"] = distribution([arrival * 1000 for arrival, _ in pairs])
        result["read_latency_ms"] = distribution([read * 1000 for _, read in pairs])
        joins = [j for report in reports for j in report["joins"]]
        result["join_ms"] = distribution([first for first, _ in joins])
        result["first_frame_ms"] = distribution([frame for _, frame in joins if frame is not None])
        result["keyframe_requests"] = sum(r.get("keyframe_requests", 0) for r in reports)
        not_ready = [n for r in reports for n in r.get("not_ready", [])]
        if not_ready:
            result["subscribers_not_ready"] = not_ready[:10]
        failures = [f for r in reports for f in r.get("failures", [])]
        if failures:
            result["join_errors"] = failures[:5]
    return result
