"""Faults injected into one consumer, producer, transport or request handler stay there.

The server runs in this test's process, with its media workers in-process too
(so faults can be injected into their objects), on 127.0.0.1; a second room
with media flowing must not notice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from sfu.client import ProtooError
from sfu.rooms.requests import TransportRequest
from sfu.rooms.room import Route
from sfu.server import SfuServer

from .helpers import Participant, in_process_server, join, wait_until


@dataclass
class InProcessServer:
    server: SfuServer
    ws_url: str


@pytest.fixture
async def inprocess_server() -> AsyncIterator[InProcessServer]:
    async with in_process_server(47000) as (server, ws_url):
        yield InProcessServer(server, ws_url)


def server_peer(srv: InProcessServer, room: str, peer_id: str) -> Any:
    return srv.server.rooms[room].peers[peer_id]


def media_object(srv: InProcessServer, room: str, kind: str, object_id: str) -> Any:
    """The worker-side object (not the signaling side's handle) named ``object_id``."""
    worker = srv.server.rooms[room].router.worker.local_worker
    assert worker is not None, "the workers do not run in this process"
    entity = worker.registry.entities[object_id]
    assert type(entity).__name__.lower().endswith(kind), entity
    return entity


async def frames_keep_rising(participant: Participant, sender: str, count: int = 10) -> bool:
    sink = participant.sink_for(sender, "video")
    return await sink.wait_frames(sink.frames + count, timeout=10)


def record(participant: Participant, *events: str) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {event: [] for event in events}
    for event in events:
        participant.client.on(event, lambda *args, event=event: seen[event].append(args))
    return seen


async def test_injected_faults_stay_contained(inprocess_server: InProcessServer) -> None:
    srv = inprocess_server
    alice = await join(srv, "faulty", "alice", 440)  # type: ignore[arg-type]
    bob = await join(srv, "faulty", "bob", 550)  # type: ignore[arg-type]
    carol = await join(srv, "faulty", "carol", 660)  # type: ignore[arg-type]
    dave = await join(srv, "calm", "dave", 770)  # type: ignore[arg-type]
    erin = await join(srv, "calm", "erin", 880)  # type: ignore[arg-type]
    everyone = (alice, bob, carol, dave, erin)
    try:
        for p in everyone:
            assert await p.client.wait_for_consumers(
                4 if p in (alice, bob, carol) else 2, timeout=20
            )
        for receiver, sender in ((bob, "alice"), (carol, "alice"), (erin, "dave")):
            assert await receiver.sink_for(sender, "video").wait_frames(5, timeout=20)
        bob_events = record(bob, "consumerclosed", "peerclosed")

        # 1. A consumer whose send raises: only it closes, and bob is told.
        faulty_id = bob.consumer_for("alice", "video").id
        assert faulty_id in server_peer(srv, "faulty", "bob").consumers
        consumer = media_object(srv, "faulty", "consumer", faulty_id)

        def broken_send(*args: Any) -> None:
            raise RuntimeError("injected consumer fault")

        # The send at the end of the rewrite, which the producer reaches per packet.
        consumer.use_sender(broken_send)
        assert await wait_until(lambda: (faulty_id,) in bob_events["consumerclosed"], timeout=5)
        assert consumer.closed
        assert await frames_keep_rising(carol, "alice"), "carol lost alice's video"
        assert await frames_keep_rising(erin, "dave"), "the other room noticed"
        assert bob_events["peerclosed"] == []

        # 2. A producer whose packet handling raises: it closes, alice is told,
        # its consumers close at bob and carol; alice's video producer is fine.
        alice_seen = record(alice, "notification", "producerclosed")
        audio_id = alice.producers["audio"]
        assert audio_id in server_peer(srv, "faulty", "alice").producers
        producer = media_object(srv, "faulty", "producer", audio_id)

        def broken_sink(*args: Any) -> None:
            raise RuntimeError("injected producer fault")

        # The audio-level sink, which the producer calls for every packet on
        # either receive path (in C for in-order packets, else in Python).
        producer.audio_level_sink = broken_sink
        assert await wait_until(lambda: producer.closed, timeout=5)
        assert await wait_until(
            lambda: (
                any(args and args[0] == "producerClosed" for args in alice_seen["notification"])
                or bool(alice_seen["producerclosed"])
            ),
            timeout=5,
        ), alice_seen
        assert await wait_until(
            lambda: (
                not any(
                    c.kind == "audio" and c.peer_id == "alice"
                    for c in carol.client.consumers.values()
                )
            ),
            timeout=5,
        )
        assert await frames_keep_rising(carol, "alice")

        # 3. A transport whose datagram handling raises: carol's receiving
        # transport closes and she is told; the room and other rooms go on.
        carol_seen = record(carol, "notification", "transportclosed")
        carol_peer = server_peer(srv, "faulty", "carol")
        transport_id = next(t.id for t in carol_peer.transports.values() if t.app_data["consuming"])
        transport = media_object(srv, "faulty", "transport", transport_id)

        def broken_demux(*args: Any) -> None:
            raise RuntimeError("injected transport fault")

        transport._demux = broken_demux
        assert await wait_until(lambda: transport.closed, timeout=10)
        assert await wait_until(
            lambda: (
                any(args and args[0] == "transportClosed" for args in carol_seen["notification"])
                or bool(carol_seen["transportclosed"])
            ),
            timeout=5,
        ), carol_seen
        assert transport.close_reason == "error"
        # The signaling side's handle learnt it over the channel.
        assert await wait_until(lambda: transport_id not in carol_peer.transports, timeout=5)
        assert await frames_keep_rising(erin, "dave")
        assert "alice" in srv.server.rooms["faulty"].peers

        # 4. A request handler that raises: a 500 error response, and the
        # connection stays usable.
        room = srv.server.rooms["faulty"]

        async def broken_handler(peer: Any, data: dict[str, Any]) -> Any:
            raise RuntimeError("injected handler fault")

        room._routes["getTransportStats"] = Route(TransportRequest, broken_handler)
        with pytest.raises(ProtooError) as error:
            await bob.client.request("getTransportStats", {"transportId": "x"})
        assert error.value.code == 500
        assert await bob.client.request("getRouterRtpCapabilities")
        assert await frames_keep_rising(erin, "dave")
    finally:
        await asyncio.gather(*(p.client.close() for p in everyone), return_exceptions=True)
