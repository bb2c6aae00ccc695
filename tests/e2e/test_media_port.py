"""Garbage at a live transport's UDP port is dropped and counted; media keeps flowing."""

from __future__ import annotations

import random
import socket

from aioice import stun

from ..conftest import ServerProcess
from .helpers import join


def garbage(rng: random.Random) -> list[bytes]:
    packets = [rng.randbytes(rng.randrange(1, 1400)) for _ in range(300)]
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = "unknownufrag:x"
    request.attributes["PRIORITY"] = 1
    request.add_message_integrity(b"not-the-password")
    signed = bytes(request)
    packets += [signed, signed[:25], signed[:-4] + b"\x00\x00\x00\x00"]
    # RTP/RTCP-looking with impossible lengths, and DTLS-looking records
    packets += [
        bytes([0x80 | rng.randrange(16), rng.randrange(256)]) + rng.randbytes(rng.randrange(0, 40))
        for _ in range(100)
    ]
    packets += [bytes([0x9F, 0x60, 0, 1]) + bytes(8) + b"\xbe\xde\xff\xff"]
    packets += [bytes([22, 254, 253]) + rng.randbytes(50) for _ in range(20)]
    return packets


async def test_garbage_at_a_live_media_port_is_dropped_and_counted(
    sfu_server: ServerProcess,
) -> None:
    alice = await join(sfu_server, "garbage", "alice", 440)
    bob = await join(sfu_server, "garbage", "bob", 660)
    try:
        assert await bob.client.wait_for_consumers(2, timeout=15)
        sink = bob.sink_for("alice", "video")
        assert await sink.wait_frames(5, timeout=20)
        pc = alice.client.send_transport.handler.pc
        ice = pc.getTransceivers()[0].sender.transport.transport
        [server_candidate] = ice.getRemoteCandidates()
        target = (server_candidate.ip, server_candidate.port)
        assert target[0] == "127.0.0.1"

        packets = garbage(random.Random(1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for packet in packets:
                sock.sendto(packet, target)
        count = sink.frames
        assert await sink.wait_frames(count + 15, timeout=10), "media stopped under garbage"
        dropped = sfu_server.health()["droppedPackets"]
        print(f"\n{len(packets)} garbage datagrams sent; server drop counters: {dropped}")
        assert dropped.get("rtp-from-unverified-address", 0) >= 100
        assert dropped.get("stun-unauthorized", 0) >= 1
        assert sum(dropped.values()) >= len(packets) * 0.9
        assert "internal-error" not in dropped
        assert "Traceback" not in sfu_server.log()
    finally:
        await alice.client.close()
        await bob.client.close()
