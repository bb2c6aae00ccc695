"""Reconnection: a dropped WebSocket resumes the session, an expired one joins afresh,
ICE restarts keep media, and a server shutdown is fatal (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from typing import Any

import pytest

from sfu.client import SfuClient
from sfu.client.media import TrackSink

from ..conftest import LOOPBACK, ServerProcess, free_tcp_port
from .helpers import Participant, close_all, join, wait_until

GRACE_1S = pytest.mark.parametrize(
    "server_overrides", [{"signaling": {"peer_grace_period": 1.0}}], ids=["grace-1s"]
)


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    return {"signaling": {"peer_grace_period": 10.0}}


class Recorder:
    """Every reconnection-related event of one client, in order, with its time."""

    def __init__(self, client: SfuClient) -> None:
        self.events: list[tuple[str, Any]] = []
        self.times: list[float] = []
        self._changed = asyncio.Event()
        for name in (
            "disconnected",
            "reconnecting",
            "reconnected",
            "fatal",
            "producersreplaced",
            "peerclosed",
            "newpeer",
            "consumerclosed",
            "transportclosed",
            "producerclosed",
        ):
            client.on(name, lambda *args, name=name: self._add(name, *args))

    def _add(self, name: str, *args: Any) -> None:
        value: Any = args[0] if args else None
        if name == "newpeer":
            value = value["id"]
        self.events.append((name, value))
        self.times.append(time.monotonic())
        self._changed.set()

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def values(self, name: str) -> list[Any]:
        return [value for event, value in self.events if event == name]

    async def wait_for(self, name: str, timeout: float) -> Any:
        async def wait() -> Any:
            while True:
                values = self.values(name)
                if values:
                    return values[0]
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)


async def joined_pair(server: ServerProcess, room: str) -> tuple[Participant, Participant]:
    alice = await join(server, room, "alice", 440)
    bob = await join(server, room, "bob", 660)
    for p in (alice, bob):
        assert await p.client.wait_for_consumers(2, timeout=15), list(p.client.consumers)
    for receiver, sender in ((alice, "bob"), (bob, "alice")):
        sink = receiver.sink_for(sender, "video")
        assert await sink.wait_frames(10, timeout=20), (
            f"{receiver.client.peer_id}: no video from {sender}"
        )
    return alice, bob


def max_gap(sink: TrackSink, since: float, until: float) -> float:
    """The longest time without a decoded frame within [since, until]."""
    arrivals = [since, *(t for t in sink.timestamps if since < t < until), until]
    return max(b - a for a, b in itertools.pairwise(arrivals))


async def keeps_decoding(sink: TrackSink, frames: int = 15, timeout: float = 10) -> bool:
    return await sink.wait_frames(sink.frames + frames, timeout=timeout)


async def test_dropped_websocket_resumes_without_the_others_noticing(
    sfu_server: ServerProcess,
) -> None:
    alice, bob = await joined_pair(sfu_server, "drop")
    try:
        alice_log, bob_log = Recorder(alice.client), Recorder(bob.client)
        bob_consumers = set(bob.client.consumers)
        alice_consumers = set(alice.client.consumers)
        alice_producers = dict(alice.producers)
        bob_sees_alice = bob.sink_for("alice", "video")
        alice_sees_bob = alice.sink_for("bob", "video")

        dropped_at = time.monotonic()
        alice.client._drop_connection_for_test()
        resumed = await alice_log.wait_for("reconnected", timeout=10)
        resumed_at = alice_log.times[alice_log.names().index("reconnected")]
        print(
            f"\nWebSocket dropped and session resumed in {(resumed_at - dropped_at) * 1000:.0f} ms "
            f"({len(alice_log.values('reconnecting'))} attempt(s))"
        )
        assert resumed is True
        assert alice_log.names()[0] == "disconnected"
        assert alice_log.values("reconnecting")[0] == 1
        assert not alice.client.reconnecting

        # Media never depended on the WebSocket: both keep decoding, without a gap.
        for sink in (bob_sees_alice, alice_sees_bob):
            assert await keeps_decoding(sink)
        after = time.monotonic()
        for name, sink in (("bob <- alice", bob_sees_alice), ("alice <- bob", alice_sees_bob)):
            gap = max_gap(sink, dropped_at - 1.0, after)
            assert gap < 1.0, f"{name}: no video for {gap:.2f} s around the drop"

        # Nobody noticed; nothing was made again.
        assert bob_log.events == [], bob_log.events
        assert set(bob.client.consumers) == bob_consumers
        assert set(alice.client.consumers) == alice_consumers
        assert set(alice.client.producers) == set(alice_producers.values())
        assert not {"consumerclosed", "peerclosed", "newpeer", "producersreplaced"} & set(
            alice_log.names()
        )
        assert set(alice.client.peers) == {"bob"}
        health = sfu_server.health()
        assert (health["peers"], health["producers"], health["consumers"]) == (2, 4, 4)
        # The new connection carries requests.
        stats = await alice.client.request(
            "getProducerStats", {"producerId": alice_producers["video"]}
        )
        assert stats[0]["packetCount"] > 0
    finally:
        await close_all(alice, bob)


async def test_resume_reconciles_what_changed_while_away(sfu_server: ServerProcess) -> None:
    """While alice cannot reconnect, bob leaves and carol joins: on resume alice
    forgets bob (peerclosed, consumerclosed) and gets carol (newpeer, newConsumer)."""
    alice, bob = await joined_pair(sfu_server, "away")
    carol: Participant | None = None
    try:
        alice_log = Recorder(alice.client)
        bob_consumers = {c.id for c in alice.client.consumers.values() if c.peer_id == "bob"}
        real_url = alice.client.url
        alice.client.url = f"ws://127.0.0.1:{free_tcp_port()}"  # nothing listens there
        alice.client._drop_connection_for_test()
        assert await wait_until(lambda: alice.client.reconnecting, timeout=2)

        await bob.client.close()
        carol = await join(sfu_server, "away", "carol", 880)
        assert await wait_until(lambda: sfu_server.health()["producers"] == 4, timeout=5)
        assert not {"peerclosed", "consumerclosed", "newpeer"} & set(alice_log.names())
        alice.client.url = real_url

        assert await alice_log.wait_for("reconnected", timeout=10) is True
        assert alice_log.values("peerclosed") == ["bob"]
        assert set(alice_log.values("consumerclosed")) == bob_consumers
        assert alice_log.values("newpeer") == ["carol"]
        assert set(alice.client.peers) == {"carol"}
        assert await wait_until(
            lambda: (
                {(c.peer_id, c.kind) for c in alice.client.consumers.values()}
                == {("carol", "audio"), ("carol", "video")}
            ),
            timeout=10,
        ), [(c.peer_id, c.kind) for c in alice.client.consumers.values()]
        assert await alice.sink_for("carol", "video").wait_frames(10, timeout=20)
        assert await carol.client.wait_for_consumers(2, timeout=10)
        assert await carol.sink_for("alice", "video").wait_frames(10, timeout=20)
    finally:
        await close_all(alice, bob, *([carol] if carol else []))


async def test_a_newer_session_with_the_same_peer_id_is_fatal_for_the_old_one(
    sfu_server: ServerProcess,
) -> None:
    # bob keeps the room open while alice's session is replaced.
    bob = await join(sfu_server, "replace", "bob", 660, video=False)
    alice = await join(sfu_server, "replace", "alice", 440, video=False)
    newer = SfuClient(sfu_server.ws_url, "replace", "alice", ice_addresses=LOOPBACK)
    try:
        log = Recorder(alice.client)
        await newer.join()
        reason = await log.wait_for("fatal", timeout=5)
        assert "replaced" in reason, reason
        await asyncio.sleep(0.5)
        assert "reconnecting" not in log.names(), log.names()
        assert alice.client.closed
        assert not newer.closed
        assert sfu_server.health()["peers"] == 2
    finally:
        await asyncio.gather(alice.client.close(), bob.client.close(), newer.close())


@GRACE_1S
async def test_expired_session_joins_afresh_and_produces_again(sfu_server: ServerProcess) -> None:
    alice, bob = await joined_pair(sfu_server, "expire")
    try:
        alice_log, bob_log = Recorder(alice.client), Recorder(bob.client)
        old_producers = dict(alice.producers)  # kind -> id
        old_alice_consumers = set(alice.client.consumers)
        real_url = alice.client.url
        alice.client.url = f"ws://127.0.0.1:{free_tcp_port()}"  # nothing listens there

        dropped_at = time.monotonic()
        alice.client._drop_connection_for_test()
        assert await wait_until(lambda: ("peerclosed", "alice") in bob_log.events, timeout=5), (
            bob_log.events
        )
        await asyncio.sleep(max(0.0, dropped_at + 2.0 - time.monotonic()))
        assert alice.client.reconnecting
        assert "reconnected" not in alice_log.names()
        assert len(alice_log.values("reconnecting")) >= 1
        alice.client.url = real_url

        resumed = await alice_log.wait_for("reconnected", timeout=15)
        print(
            f"\nsession expired; joined afresh {time.monotonic() - dropped_at:.1f} s after the drop "
            f"({len(alice_log.values('reconnecting'))} attempts)"
        )
        assert resumed is False
        replaced = alice_log.values("producersreplaced")
        assert len(replaced) == 1
        mapping = replaced[0]
        assert set(mapping) == set(old_producers.values())
        assert not set(mapping.values()) & set(mapping)
        assert set(alice.client.producers) == set(mapping.values())
        assert alice_log.names().index("producersreplaced") < alice_log.names().index("reconnected")
        # Alice's old consumers were closed; she consumes bob again.
        assert set(alice_log.values("consumerclosed")) == old_alice_consumers
        assert await alice.client.wait_for_consumers(2, timeout=10)
        assert not old_alice_consumers & set(alice.client.consumers)

        # Bob saw alice go and come back, and decodes her new video.
        assert await wait_until(lambda: ("newpeer", "alice") in bob_log.events, timeout=5), (
            bob_log.events
        )
        assert bob_log.events.index(("peerclosed", "alice")) < bob_log.events.index(
            ("newpeer", "alice")
        )
        assert await wait_until(
            lambda: (
                {c.producer_id for c in bob.client.consumers.values() if c.peer_id == "alice"}
                == set(mapping.values())
            ),
            timeout=10,
        ), [(c.peer_id, c.producer_id) for c in bob.client.consumers.values()]
        assert await bob.sink_for("alice", "video").wait_frames(10, timeout=20), (
            "bob: no new video from alice"
        )
        assert await alice.sink_for("bob", "video").wait_frames(10, timeout=20), (
            "alice: no video from bob"
        )
        health = sfu_server.health()
        assert (health["peers"], health["producers"], health["consumers"]) == (2, 4, 4)
    finally:
        await close_all(alice, bob)


async def test_ice_restart_keeps_producers_consumers_and_media(sfu_server: ServerProcess) -> None:
    alice, bob = await joined_pair(sfu_server, "ice")
    try:
        alice_log, bob_log = Recorder(alice.client), Recorder(bob.client)
        consumers = {p.client.peer_id: set(p.client.consumers) for p in (alice, bob)}
        producers = {p.client.peer_id: set(p.client.producers) for p in (alice, bob)}

        restarted = await alice.client.restart_ice()
        assert set(restarted) == {alice.client.send_transport.id, alice.client.recv_transport.id}
        for parameters in restarted.values():
            assert parameters["usernameFragment"]
            assert parameters["password"]

        for receiver, sender in ((alice, "bob"), (bob, "alice")):
            assert await keeps_decoding(receiver.sink_for(sender, "video")), (
                f"{receiver.client.peer_id} stopped decoding {sender} after the ICE restart"
            )
        assert {p.client.peer_id: set(p.client.consumers) for p in (alice, bob)} == consumers
        assert {p.client.peer_id: set(p.client.producers) for p in (alice, bob)} == producers
        assert alice_log.events == []
        assert bob_log.events == []
        health = sfu_server.health()
        assert (health["producers"], health["consumers"]) == (4, 4)
    finally:
        await close_all(alice, bob)


async def test_server_shutdown_is_fatal_and_not_retried(sfu_server: ServerProcess) -> None:
    alice, bob = await joined_pair(sfu_server, "shutdown")
    try:
        logs = {p.client.peer_id: Recorder(p.client) for p in (alice, bob)}
        sfu_server.process.send_signal(signal.SIGTERM)
        reasons = {
            peer_id: await log.wait_for("fatal", timeout=10) for peer_id, log in logs.items()
        }
        assert reasons == {
            "alice": "the server is shutting down",
            "bob": "the server is shutting down",
        }
        code = await asyncio.to_thread(sfu_server.process.wait, 10)
        assert code == 0, sfu_server.log()[-2000:]
        # Give a retry every chance to show up.
        await asyncio.sleep(1.0)
        for p in (alice, bob):
            names = logs[p.client.peer_id].names()
            assert "reconnecting" not in names, names
            assert names.index("disconnected") < names.index("fatal")
            assert p.client.closed
            assert p.client.fatal_reason == "the server is shutting down"
            assert not p.client.reconnecting
    finally:
        await close_all(alice, bob)
