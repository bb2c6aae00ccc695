"""A network blip between one client and the server, made with a UDP relay on 127.0.0.1.

The relay sits in the media path of one peer (its transports' server candidate
is rewritten to the relay's port). Blackholing it for a few seconds must not
end the call; blackholing it past ``media.ice_timeout`` removes the peer
everywhere.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sfu.client import SfuClient, TrackSink

from ..conftest import ServerProcess
from .helpers import Participant, join, wait_until

ICE_TIMEOUT = 8.0
BLIP = 5.0


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    return {"media": {"ice_timeout": ICE_TIMEOUT}}


class UdpRelay(asyncio.DatagramProtocol):
    """client <-> relay <-> server, on loopback. ``blackhole`` drops both ways."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.client: tuple[str, int] | None = None
        self.blackhole = False
        self.dropped = 0
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None

    @classmethod
    async def start(cls, server: tuple[str, int]) -> UdpRelay:
        relay = cls(server)
        loop = asyncio.get_running_loop()
        relay.front, _ = await loop.create_datagram_endpoint(
            lambda: _Side(relay, toward_server=True), local_addr=("127.0.0.1", 0)
        )
        relay.back, _ = await loop.create_datagram_endpoint(
            lambda: _Side(relay, toward_server=False), local_addr=("127.0.0.1", 0)
        )
        return relay

    @property
    def port(self) -> int:
        assert self.front is not None
        return int(self.front.get_extra_info("sockname")[1])

    def forward(self, data: bytes, addr: tuple[str, int], toward_server: bool) -> None:
        if self.blackhole:
            self.dropped += 1
            return
        if toward_server:
            self.client = addr
            assert self.back is not None
            self.back.sendto(data, self.server)
        elif self.client is not None:
            assert self.front is not None
            self.front.sendto(data, self.client)

    def close(self) -> None:
        for side in (self.front, self.back):
            if side is not None:
                side.close()


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, toward_server: bool) -> None:
        self.relay = relay
        self.toward_server = toward_server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.forward(data, addr, self.toward_server)


async def join_through_relays(
    server: ServerProcess, room: str, peer_id: str, relays: list[UdpRelay]
) -> Participant:
    """``join`` with every transport's server candidate pointed at a new relay."""
    original_request = SfuClient.request

    async def request(
        self: SfuClient, method: str, data: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        reply = await original_request(self, method, data, *args, **kwargs)
        if method == "createWebRtcTransport" and self.peer_id == peer_id:
            [candidate] = reply["iceCandidates"]
            relay = await UdpRelay.start((candidate["address"], candidate["port"]))
            relays.append(relay)
            reply = dict(reply, iceCandidates=[dict(candidate, port=relay.port)])
        return reply

    SfuClient.request = request  # type: ignore[method-assign]
    try:
        return await join(server, room, peer_id, 440)
    finally:
        SfuClient.request = original_request  # type: ignore[method-assign]


async def frames_resume(sink: TrackSink, timeout: float) -> float | None:
    """Seconds until the sink gets 5 new frames, or None."""
    started = time.monotonic()
    count = sink.frames
    if await sink.wait_frames(count + 5, timeout=timeout):
        return time.monotonic() - started
    return None


async def test_five_second_blackhole_does_not_end_the_call(sfu_server: ServerProcess) -> None:
    relays: list[UdpRelay] = []
    bob = await join(sfu_server, "blip", "bob", 660)
    alice = await join_through_relays(sfu_server, "blip", "alice", relays)
    try:
        assert len(relays) == 2
        assert await alice.client.wait_for_consumers(2, timeout=15)
        assert await bob.client.wait_for_consumers(2, timeout=15)
        bob_sees_alice = bob.sink_for("alice", "video")
        alice_sees_bob = alice.sink_for("bob", "video")
        assert await bob_sees_alice.wait_frames(10, timeout=20)
        assert await alice_sees_bob.wait_frames(10, timeout=20)
        events: list[tuple[str, Any]] = []
        bob.client.on("peerclosed", lambda p: events.append(("peerclosed", p)))
        bob.client.on("newpeer", lambda p: events.append(("newpeer", p)))
        consumers_before = set(bob.client.consumers)

        for relay in relays:
            relay.blackhole = True
        await asyncio.sleep(BLIP)  # under the ICE timeout
        for relay in relays:
            relay.blackhole = False
        recovered = await asyncio.gather(
            frames_resume(bob_sees_alice, 10), frames_resume(alice_sees_bob, 10)
        )
        print(
            f"\nblackhole of {BLIP:.0f} s ({sum(r.dropped for r in relays)} datagrams "
            f"dropped): video resumed after {recovered[0]} s (alice->bob) and "
            f"{recovered[1]} s (bob->alice)"
        )
        assert all(t is not None and t < 10 for t in recovered), recovered
        assert events == [], f"the blip caused peer events at bob: {events}"
        assert set(bob.client.consumers) == consumers_before, "consumers were re-created"
    finally:
        for relay in relays:
            relay.close()
        await asyncio.gather(alice.client.close(), bob.client.close())


async def test_blackhole_past_the_ice_timeout_removes_the_peer(sfu_server: ServerProcess) -> None:
    relays: list[UdpRelay] = []
    bob = await join(sfu_server, "blip-long", "bob", 660)
    alice = await join_through_relays(sfu_server, "blip-long", "alice", relays)
    alice.client.auto_reconnect = False  # it would rejoin at once after close 4002
    try:
        assert await bob.client.wait_for_consumers(2, timeout=15)
        assert await bob.sink_for("alice", "video").wait_frames(5, timeout=20)
        closed: list[str] = []
        bob.client.on("peerclosed", closed.append)
        for relay in relays:
            relay.blackhole = True
        started = time.monotonic()
        assert await wait_until(lambda: closed == ["alice"], timeout=ICE_TIMEOUT + 8), closed
        print(f"\nalice removed everywhere {time.monotonic() - started:.1f} s into the blackhole")
        assert not any(c.peer_id == "alice" for c in bob.client.consumers.values())
        assert await wait_until(lambda: sfu_server.health()["peers"] == 1, timeout=5)
        assert sfu_server.health()["transports"] == 2
    finally:
        for relay in relays:
            relay.close()
        await asyncio.gather(alice.client.close(), bob.client.close(), return_exceptions=True)
