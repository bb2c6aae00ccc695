"""Media worker processes: rooms placed on the least-loaded worker, a worker
killed with SIGKILL and replaced, and a room spanning two workers through pipe
transports. Real server process, pymediasoup bots, decoded media, 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

import pytest

from ..conftest import ServerProcess
from .helpers import Participant, close_all, dominant_frequency, join, wait_until

TWO_WORKERS: dict[str, dict[str, Any]] = {"workers": {"count": 2}}


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    return TWO_WORKERS


def workers_of(server: ServerProcess) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = server.health()["workers"]
    return workers


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def frames_rise(participant: Participant, sender: str) -> bool:
    sink = participant.sink_for(sender, "video")
    return await sink.wait_frames(sink.frames + 10, timeout=15)


async def heard_tone(participant: Participant, sender: str) -> float:
    """The dominant frequency of the last second of ``sender``'s audio (left channel)."""
    sink = participant.sink_for(sender, "audio")
    assert await wait_until(lambda: sink.audio(1.0).size >= 2 * 48000, timeout=20)
    return dominant_frequency(sink.audio(1.0)[::2])


async def test_rooms_go_to_the_least_loaded_worker(sfu_server: ServerProcess) -> None:
    workers = workers_of(sfu_server)
    assert len(workers) == 2
    assert len({w["pid"] for w in workers}) == 2
    assert all(w["pid"] != sfu_server.pid and is_alive(w["pid"]) for w in workers)

    alice = await join(sfu_server, "first", "alice", 440)
    bob = await join(sfu_server, "first", "bob", 550)
    carol = await join(sfu_server, "second", "carol", 660)
    dave = await join(sfu_server, "second", "dave", 770)
    try:
        for receiver, sender in ((alice, "bob"), (bob, "alice"), (carol, "dave"), (dave, "carol")):
            assert await wait_until(lambda r=receiver, s=sender: _has(r, s), timeout=20)
            assert await receiver.sink_for(sender, "video").wait_frames(5, timeout=20)
        # One room per worker, each with its own process.
        assert sorted(w["routers"] for w in workers_of(sfu_server)) == [1, 1]
    finally:
        await close_all(alice, bob, carol, dave)


def _has(participant: Participant, sender: str) -> bool:
    try:
        participant.sink_for(sender, "video")
    except KeyError:
        return False
    return True


async def test_a_killed_worker_is_replaced_and_its_peers_rejoin(sfu_server: ServerProcess) -> None:
    alice = await join(sfu_server, "doomed", "alice", 440)
    bob = await join(sfu_server, "doomed", "bob", 550)
    carol = await join(sfu_server, "safe", "carol", 660)
    dave = await join(sfu_server, "safe", "dave", 770)
    everyone = (alice, bob, carol, dave)
    try:
        for receiver, sender in ((alice, "bob"), (bob, "alice"), (carol, "dave"), (dave, "carol")):
            assert await wait_until(lambda r=receiver, s=sender: _has(r, s), timeout=20)
            assert await receiver.sink_for(sender, "video").wait_frames(5, timeout=20)
        workers = workers_of(sfu_server)
        assert [w["routers"] for w in workers] == [1, 1]
        # The worker of room "doomed" is the one alice's room was placed on: the first.
        doomed_pid = workers[0]["pid"]
        alice_events: list[Any] = []
        alice.client.on("disconnected", lambda *a: alice_events.append("disconnected"))
        alice.client.on("reconnected", lambda *a: alice_events.append(("reconnected", a)))
        carol_closed: list[Any] = []
        carol.client.on("peerclosed", lambda *a: carol_closed.append(a))
        bob_video_before = bob.sink_for("alice", "video")

        os.kill(doomed_pid, signal.SIGKILL)

        # Its peers are told (close code 4002) and their clients join again, on a live worker.
        assert await wait_until(lambda: "disconnected" in alice_events, timeout=10), alice_events
        assert await wait_until(
            lambda: any(isinstance(e, tuple) for e in alice_events), timeout=30
        ), alice_events
        assert await wait_until(
            lambda: _has(bob, "alice") and bob.sink_for("alice", "video") is not bob_video_before,
            timeout=30,
        )
        assert await bob.sink_for("alice", "video").wait_frames(5, timeout=20)
        assert await wait_until(lambda: _has(alice, "bob"), timeout=20)
        assert await alice.sink_for("bob", "video").wait_frames(5, timeout=20)

        # A new worker replaced the dead one; the other room never noticed.
        assert await wait_until(
            lambda: (
                len(workers_of(sfu_server)) == 2
                and doomed_pid not in {w["pid"] for w in workers_of(sfu_server)}
            ),
            timeout=20,
        )
        assert sfu_server.health()["workerRestarts"] == 1
        assert not is_alive(doomed_pid)
        assert await frames_rise(carol, "dave")
        assert await frames_rise(dave, "carol")
        assert carol_closed == []
        assert sfu_server.process.poll() is None
    finally:
        await close_all(*everyone)


async def test_a_hung_worker_is_killed_and_replaced(sfu_server: ServerProcess) -> None:
    alice = await join(sfu_server, "stuck", "alice", 440)
    bob = await join(sfu_server, "stuck", "bob", 550)
    hung_pid: int | None = None
    try:
        assert await wait_until(lambda: _has(bob, "alice"), timeout=20)
        assert await bob.sink_for("alice", "video").wait_frames(5, timeout=20)
        workers = workers_of(sfu_server)
        hung_pid = next(w["pid"] for w in workers if w["routers"] == 1)
        before = bob.sink_for("alice", "video")

        os.kill(hung_pid, signal.SIGSTOP)  # alive, but answers nothing

        # /health stays quick meanwhile (the hung worker's last stats are shown).
        assert len(workers_of(sfu_server)) == 2
        # The heartbeat gives up on it, kills it, and a new worker replaces it;
        # its peers are told and join again.
        assert await wait_until(lambda: not is_alive(hung_pid), timeout=20)
        assert await wait_until(lambda: sfu_server.health()["workerRestarts"] == 1, timeout=20)
        assert await wait_until(
            lambda: _has(bob, "alice") and bob.sink_for("alice", "video") is not before,
            timeout=30,
        )
        assert await bob.sink_for("alice", "video").wait_frames(5, timeout=20)
        assert hung_pid not in {w["pid"] for w in workers_of(sfu_server)}
    finally:
        if hung_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung_pid, signal.SIGCONT)
        await close_all(alice, bob)


@pytest.mark.parametrize(
    "server_overrides",
    [{"workers": {"count": 2, "max_peers_per_router": 2}}],
    ids=["two-per-router"],
)
async def test_a_room_spans_two_workers_through_pipe_transports(
    sfu_server: ServerProcess,
) -> None:
    # Two peers fill the room's first router; the next two get a router on the other worker.
    tones = {"alice": 440, "bob": 550, "carol": 660, "dave": 770}
    peers = {name: await join(sfu_server, "big", name, tone) for name, tone in tones.items()}
    try:
        workers = workers_of(sfu_server)
        assert [w["routers"] for w in workers] == [1, 1], workers
        health = sfu_server.health()
        # 4 peers x 2 WebRTC transports + the two ends of one pipe.
        assert await wait_until(lambda: sfu_server.health()["transports"] == 10, timeout=10), health

        # Everyone decodes everyone else's video and hears their tone: across workers too.
        for receiver_name, receiver in peers.items():
            for sender in tones:
                if sender == receiver_name:
                    continue
                assert await wait_until(lambda r=receiver, s=sender: _has(r, s), timeout=20)
                assert await receiver.sink_for(sender, "video").wait_frames(5, timeout=20), (
                    f"{receiver_name} got no video from {sender}"
                )
        for receiver_name, sender in (("alice", "carol"), ("dave", "bob")):
            frequency = await heard_tone(peers[receiver_name], sender)
            assert abs(frequency - tones[sender]) < 10, (receiver_name, sender, frequency)

        # Closing a producer on one worker closes its consumers on the other.
        carol_video = peers["carol"].producers["video"]
        closed: list[Any] = []
        peers["alice"].client.on("consumerclosed", lambda *a: closed.append(a))
        await peers["carol"].client.close_producer(carol_video)
        assert await wait_until(
            lambda: (
                not any(
                    c.peer_id == "carol" and c.kind == "video"
                    for c in peers["alice"].client.consumers.values()
                )
            ),
            timeout=10,
        ), closed

        # A peer leaving on the second worker is gone for the first worker's peers.
        await peers["dave"].client.close()
        assert await wait_until(lambda: "dave" not in peers["alice"].client.peers, timeout=10)
        assert await frames_rise(peers["alice"], "bob")
        assert await frames_rise(peers["carol"], "alice")
    finally:
        await close_all(*peers.values())
