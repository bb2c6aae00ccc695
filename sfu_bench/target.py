"""The server under load: an SFU child process, one given by ``--url``, or the MediaRelay baseline.

CPU time is read from ``/proc/<pid>/stat`` (utime + stime of every thread of
the process), RSS from ``/proc/<pid>/status``; packet totals from
``GET /health``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import worker_profile

__all__ = ["Target", "remote_sfu", "start_baseline", "start_sfu"]

START_TIMEOUT = 30.0


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_wait_seconds(pid: int) -> float | None:
    """Time the process's main thread spent runnable but waiting for a CPU (schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def proc_rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the SFU's media worker processes), from /proc."""
    children = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(entry))
    return children


def _sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the benchmark process dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Target:
    """A server to load: its WebSocket/HTTP URL and, when local, its process."""

    def __init__(
        self,
        kind: str,
        url: str,
        health_url: str,
        *,
        pid: int | None = None,
        process: subprocess.Popen[bytes] | None = None,
        workdir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.kind = kind  # "sfu" or "baseline"
        self.url = url
        self.health_url = health_url
        self.pid = pid
        self.process = process
        self.workdir = workdir
        self.log_path = log_path

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.health_url, timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def pids(self) -> list[int]:
        """The server process and its media workers: the CPU they use is the server's."""
        return [self.pid, *child_pids(self.pid)] if self.pid else []

    def cpu_seconds(self) -> float | None:
        return _sum([proc_cpu_seconds(pid) for pid in self.pids()])

    def worker_cpu_seconds(self) -> dict[int, float]:
        """CPU seconds of each media worker process (the server's children), by pid."""
        if not self.pid:
            return {}
        cpu = {pid: proc_cpu_seconds(pid) for pid in child_pids(self.pid)}
        return {pid: seconds for pid, seconds in cpu.items() if seconds is not None}

    def wait_seconds(self) -> float | None:
        return _sum([proc_wait_seconds(pid) for pid in self.pids()])

    def rss_bytes(self) -> int | None:
        rss = _sum([proc_rss_bytes(pid) for pid in self.pids()])
        return int(rss) if rss is not None else None

    def signal(self, signum: int) -> None:
        """To the server and its workers (the profiler's start and stop signals)."""
        if self.process is not None and self.process.poll() is None:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.process = None


def _wait_healthy(target: Target) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if not target.alive():
            raise RuntimeError(f"the {target.kind} server exited at start-up:\n{target.log_tail()}")
        try:
            target.health()
            return
        except OSError:
            if time.monotonic() > deadline:
                target.stop()
                raise RuntimeError(
                    f"the {target.kind} server did not come up:\n{target.log_tail()}"
                ) from None
            time.sleep(0.1)


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    return "\n".join(
        f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        for name, values in sections.items()
    )


def start_sfu(
    workdir: Path,
    *,
    profile: Path | None = None,
    ports: int = 2000,
    workers: int = 0,
    max_peers_per_router: int | None = None,
    recording_directory: Path | None = None,
) -> Target:
    """``python -m sfu --config <tmp toml>`` on free loopback ports, with ``workers``
    media workers (0: one per CPU). With ``profile``, one worker, and both it and
    the signaling process run under cProfile: the worker's stats (the media hot
    path) go to ``profile``, the signaling process's to ``profile.signaling``.
    ``max_peers_per_router``: when a room spreads to another worker (None: the
    server's default; 0: never, the room stays on one worker). ``recording_directory``:
    every room is recorded there."""
    if profile is not None:
        workers = 1
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_tcp_port()
    media_min = random.randrange(20000, 60000 - ports, 100)
    config = workdir / "sfu-bench.toml"
    config.write_text(
        _toml(
            {
                "http": {"listen_ip": "127.0.0.1", "port": port},
                "media": {
                    "listen_ip": "127.0.0.1",
                    "rtc_min_port": media_min,
                    "rtc_max_port": media_min + ports - 1,
                    # data-fanout measures how fast the server forwards, not its per-peer cap.
                    "data_messages_per_second": 0,
                },
                # Voice channels with hundreds of members; requests stay rate-limited per peer.
                # All peers come from 127.0.0.1: no per-IP caps.
                "limits": {
                    "max_peers_per_room": 4100,
                    "max_rooms": 1000,
                    "max_connections_per_ip": 0,
                    "joins_per_second_per_ip": 0,
                },
                "workers": {
                    "count": workers,
                    **(
                        {"max_peers_per_router": max_peers_per_router}
                        if max_peers_per_router is not None
                        else {}
                    ),
                },
                "log": {"level": "warning"},
                **(
                    {
                        "recording": {
                            "directory": str(recording_directory),
                            "auto": True,
                            "free_space_floor_mb": 0,
                        }
                    }
                    if recording_directory is not None
                    else {}
                ),
            }
        )
    )
    command = [sys.executable, "-m", "sfu", "--config", str(config)]
    env = None
    if profile is not None:
        # The media worker under cProfile (see sfu_bench.worker_profile), and below the
        # signaling process: a CPU-time timer, recording between SIGUSR1 and SIGUSR2.
        env = worker_profile.environment(profile)
        command = [
            sys.executable,
            "-m",
            "sfu_bench.profile_server",
            str(profile.with_name(profile.name + ".signaling")),
            "--config",
            str(config),
        ]
    return _spawn("sfu", command, workdir, port, ws_scheme="ws", env=env)


def remote_sfu(url: str, pid: int | None = None) -> Target:
    """A server that is already running (``--url``); CPU and RSS only with its ``pid``."""
    url = url.rstrip("/")
    http = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    target = Target("sfu", url, f"{http}/health", pid=pid)
    target.health()
    return target


def start_baseline(workdir: Path) -> Target:
    """The aiortc MediaRelay relay (:mod:`sfu_bench.baseline`) on a free loopback port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_tcp_port()
    command = [sys.executable, "-m", "sfu_bench.baseline", "--port", str(port)]
    return _spawn("baseline", command, workdir, port, ws_scheme="http")


def _spawn(
    name: str,
    command: list[str],
    workdir: Path,
    port: int,
    *,
    ws_scheme: str,
    env: dict[str, str] | None = None,
) -> Target:
    """Start a server process on ``port`` of 127.0.0.1, logging into ``workdir``, and wait for it."""
    log_path = workdir / f"{name}-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - PDEATHSIG is set in the child only; it takes no lock
            env=env,
        )
    target = Target(
        name,
        f"{ws_scheme}://127.0.0.1:{port}",
        f"http://127.0.0.1:{port}/health",
        pid=process.pid,
        process=process,
        workdir=workdir,
        log_path=log_path,
    )
    _wait_healthy(target)
    return target


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sfu-bench-"))
