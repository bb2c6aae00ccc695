"""TURN: a client with relay candidates only still gets media through the SFU.

Debian's coturn runs on 127.0.0.1 with the TURN REST API (shared secret); the
SFU hands time-limited credentials to clients in its createWebRtcTransport
replies. The relay-only client is a bot process: in this session's
loopback-only network namespace aioice gathers no host candidate (it skips
127.0.0.1), so its only candidates are coturn's relayed ones.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from ..conftest import ServerProcess, start_server, stop_server
from .helpers import join, start_bot_process

SECRET = "turn-test-secret"
RELAY_MIN, RELAY_MAX = 49400, 49500


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TURN_PORT = free_port(socket.SOCK_DGRAM)


@pytest.fixture
def coturn(tmp_path: Any) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn is not installed (make test installs it: scripts/ensure-test-deps)")
    log = (tmp_path / "coturn.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={TURN_PORT}",
            f"--min-port={RELAY_MIN}",
            f"--max-port={RELAY_MAX}",
            "--use-auth-secret",
            f"--static-auth-secret={SECRET}",
            "--realm=sfu.test",
            "--allow-loopback-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--fingerprint",
            "--log-file=stdout",
            "--simple-log",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    process.wait(5)


@pytest.fixture
def sfu_server(tmp_path: Any, coturn: subprocess.Popen[bytes]) -> Iterator[ServerProcess]:
    turn = (
        f'\n[[ice_servers]]\nurls = ["turn:127.0.0.1:{TURN_PORT}?transport=udp"]\n'
        f'shared_secret = "{SECRET}"\nttl = 600\n'
    )
    server = start_server(tmp_path, extra_toml=turn)
    yield server
    stop_server(server)


async def test_relay_only_client_gets_media_through_coturn(sfu_server: ServerProcess) -> None:
    bob = await join(sfu_server, "turn", "bob", 440)
    # No --ice-address: in this loopback-only namespace it gathers relay candidates only.
    bot = await start_bot_process(
        sfu_server, "turn", "relayed", "--tone", "660", "--duration", "12", capture=True
    )
    try:
        assert await bob.client.wait_for_consumers(2, timeout=30), (
            "the relayed bot's media never arrived"
        )
        video = bob.sink_for("relayed", "video")
        assert await video.wait_frames(20, timeout=30), (
            f"bob decoded {video.frames} frames via TURN"
        )
        output = (await asyncio.wait_for(bot.communicate(), 40))[0].decode(errors="replace")
        received = dict(re.findall(r"received bob (\w+) frames (\d+)", output))
        print(
            f"\nvia coturn: bob decoded {video.frames} frames from the relayed bot; it received {received}"
        )
        assert int(received.get("video", 0)) >= 20, output[-2000:]
        # Both of the bot's transports were selected on coturn's relay ports.
        selected = re.findall(r"peer relayed\): ICE selected 127\.0\.0\.1:(\d+)", sfu_server.log())
        assert len(selected) >= 2, selected
        assert all(RELAY_MIN <= int(p) <= RELAY_MAX for p in selected), selected
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
        await bob.client.close()
