"""Single-port mode: every transport on one UDP port, demultiplexed by ufrag then address."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import pytest
from aioice import stun

from ..conftest import ServerProcess
from .helpers import join
from .test_room_media import TONES, assert_decodes_from


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


UDP_PORT = free_udp_port()


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    return {"media": {"udp_port": UDP_PORT}}


def server_ports(participant: Any) -> set[int]:
    ports: set[int] = set()
    for transport in (participant.client.send_transport, participant.client.recv_transport):
        ice = transport.handler.pc.getTransceivers()[0].receiver.transport.transport
        ports.update(c.port for c in ice.getRemoteCandidates())
    return ports


async def test_three_peers_over_one_udp_port_with_garbage(sfu_server: ServerProcess) -> None:
    peers = [await join(sfu_server, "single", pid, TONES[pid]) for pid in ("p1", "p2", "p3")]
    try:
        for p in peers:
            assert await p.client.wait_for_consumers(4, timeout=15)
            assert server_ports(p) == {UDP_PORT}
        assert sfu_server.health()["transports"] == 6

        # Garbage at the shared port from addresses that completed no ICE:
        # random bytes, STUN for an unknown ufrag, RTP-looking packets.
        rng = random.Random(3)
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = "nosuchufrag:x"
        request.attributes["PRIORITY"] = 1
        request.add_message_integrity(b"whatever")
        garbage = [rng.randbytes(rng.randrange(1, 300)) for _ in range(200)]
        garbage += [bytes(request)] * 20 + [b"\x80\x60" + rng.randbytes(100) for _ in range(50)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for packet in garbage:
                sock.sendto(packet, ("127.0.0.1", UDP_PORT))
        await asyncio.sleep(0.5)

        for receiver in peers:
            for sender in peers:
                if sender is not receiver:
                    await assert_decodes_from(receiver, sender.client.peer_id)
        dropped = sfu_server.health()["droppedPackets"]
        print(f"\nsingle port {UDP_PORT}: {len(garbage)} garbage datagrams; drops {dropped}")
        assert dropped.get("stun-unknown-ufrag", 0) >= 20
        assert dropped.get("unknown-address", 0) + dropped.get("stun-malformed", 0) >= 200
    finally:
        await asyncio.gather(*(p.client.close() for p in peers))
