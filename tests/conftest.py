"""Shared fixtures: a real SFU server process on 127.0.0.1, and loopback-only clients."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = ["127.0.0.1"]
CLONE_NEWNET = 0x40000000

# Set by pytest_configure: whether this test session runs in its own network
# namespace that has only loopback (so Chromium cannot offer another address).
ISOLATION = {"netns": False, "reason": "not attempted"}


def _bring_loopback_up() -> None:
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


def enter_loopback_only_namespace() -> None:
    """Move this process (and every child it starts later) into a new network
    namespace with only ``lo``: all test traffic stays on 127.0.0.1 by construction."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        ISOLATION["reason"] = f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}"
        return
    _bring_loopback_up()
    ISOLATION["netns"] = True
    ISOLATION["reason"] = "loopback-only network namespace"


def pytest_configure(config: pytest.Config) -> None:
    if sys.platform == "linux" and os.environ.get("SFU_TEST_NETNS", "1") != "0":
        enter_loopback_only_namespace()


def pytest_report_header(config: pytest.Config) -> str:
    return f"network isolation: {ISOLATION['reason']}"


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    http_port: int
    log_path: Path
    scheme: str = "http"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.scheme == 'https' else 'ws'}://127.0.0.1:{self.http_port}"

    @property
    def http_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def health(self) -> dict[str, Any]:
        import ssl

        context = ssl._create_unverified_context() if self.scheme == "https" else None
        with urllib.request.urlopen(
            self.http_url + "/health", timeout=5, context=context
        ) as response:
            health: dict[str, Any] = json.loads(response.read())
            return health

    def cpu_seconds(self) -> float:
        """utime + stime of the server process, from /proc/<pid>/stat."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    tmp_path: Path,
    overrides: dict[str, dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    scheme: str = "http",
    extra_toml: str = "",
) -> ServerProcess:
    """Start ``python -m sfu`` on free loopback ports; ``overrides`` patch config sections."""
    port = free_tcp_port()
    media_min = random.randrange(20000, 59000, 200)
    sections: dict[str, dict[str, Any]] = {
        "http": {"listen_ip": "127.0.0.1", "port": port},
        "media": {
            "listen_ip": "127.0.0.1",
            "rtc_min_port": media_min,
            "rtc_max_port": media_min + 199,
        },
        "log": {"level": "info"},
    }
    for name, values in (overrides or {}).items():
        sections.setdefault(name, {}).update(values)
    config = tmp_path / "sfu-test.toml"
    config.write_text(
        "\n".join(
            f"[{name}]\n"
            + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
            for name, values in sections.items()
        )
        + extra_toml
    )
    log_path = tmp_path / "sfu-server.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "sfu", "--config", str(config)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    server = ServerProcess(process, port, log_path, scheme)
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited at start-up:\n{server.log()}")
        try:
            server.health()
            return server
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"server did not come up:\n{server.log()}") from None
            time.sleep(0.1)


def stop_server(server: ServerProcess) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(5)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


@contextmanager
def running_server(tmp_path: Path, **options: Any) -> Iterator[ServerProcess]:
    """``start_server(tmp_path, **options)``, stopped on the way out (for fixtures)."""
    server = start_server(tmp_path, **options)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    """Config overrides for ``sfu_server``; a test module may override this fixture."""
    return {}


@pytest.fixture
def sfu_server(
    tmp_path: Path, server_overrides: dict[str, dict[str, Any]]
) -> Iterator[ServerProcess]:
    server = start_server(tmp_path, server_overrides)
    try:
        yield server
    finally:
        stop_server(server)
        log = server.log()
        if "Traceback" in log:
            print(f"--- server log ---\n{log}")
