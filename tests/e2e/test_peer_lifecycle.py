"""Peers that die, and the active-speaker notification."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from sfu.client import SfuClient, ToneAudioTrack

from ..conftest import LOOPBACK, ServerProcess
from .helpers import join, start_bot_process, wait_until


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    return {"signaling": {"peer_grace_period": 1.0}}


async def test_a_killed_peer_process_is_closed_everywhere_after_the_grace_period(
    sfu_server: ServerProcess,
) -> None:
    alice = await join(sfu_server, "kill", "alice", 440)
    bot = await start_bot_process(
        sfu_server, "kill", "bot", "--ice-address", "127.0.0.1", "--duration", "60"
    )
    try:
        assert await alice.client.wait_for_consumers(2, timeout=20), "the bot's media never arrived"
        sink = alice.sink_for("bot", "video")
        assert await sink.wait_frames(5, timeout=15)
        closed_peers: list[str] = []
        closed_consumers: list[str] = []
        alice.client.on("peerclosed", closed_peers.append)
        alice.client.on("consumerclosed", closed_consumers.append)
        bot_consumers = {c.id for c in alice.client.consumers.values() if c.peer_id == "bot"}

        bot.send_signal(signal.SIGKILL)  # no goodbye: the OS closes its socket
        started = time.monotonic()
        assert await wait_until(
            lambda: closed_peers == ["bot"] and set(closed_consumers) >= bot_consumers, timeout=10
        ), f"peerClosed={closed_peers} consumerClosed={closed_consumers}"
        elapsed = time.monotonic() - started
        print(f"\nkilled peer closed everywhere after {elapsed * 1000:.0f} ms (grace period 1 s)")
        assert elapsed >= 0.9, "closed before the grace period: it could not have resumed"
        assert not any(c.peer_id == "bot" for c in alice.client.consumers.values())
        health = sfu_server.health()
        assert health["peers"] == 1
        assert health["transports"] == 2
        assert health["consumers"] == 0
    finally:
        if bot.returncode is None:
            bot.kill()
        await asyncio.wait_for(bot.wait(), 5)
        await alice.client.close()


async def test_active_speaker_follows_the_peer_who_talks(sfu_server: ServerProcess) -> None:
    talker = SfuClient(sfu_server.ws_url, "voice", "talker", ice_addresses=LOOPBACK)
    quiet = SfuClient(sfu_server.ws_url, "voice", "quiet", ice_addresses=LOOPBACK)
    speakers: list[object] = []
    quiet.on("activespeaker", lambda data: speakers.append(data.get("peerId")))
    try:
        await quiet.join()
        await talker.join()
        await quiet.produce(ToneAudioTrack(300, amplitude=0.0))  # a muted mic: silence
        producer_id = await talker.produce(ToneAudioTrack(500, amplitude=0.5))
        assert await wait_until(lambda: "talker" in speakers, timeout=5), speakers
        assert "quiet" not in speakers

        await talker.pause_producer(producer_id)
        assert await wait_until(lambda: speakers[-1] is None, timeout=5), (
            f"no silence notification after the talker paused: {speakers}"
        )
        health = sfu_server.health()
        assert health["producers"] == 2
    finally:
        await asyncio.gather(talker.close(), quiet.close())
