"""The bench subscribers' C counter (sfu_bench/_counter.c) against the Python
RtpCounter it replaces, over a real loopback socket read by asyncio's selector
loop through ``sfu_bench.aiortc_hooks.intercept_incoming_srtp``."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from types import SimpleNamespace
from typing import Any

import pytest

from sfu_bench.aiortc_hooks import intercept_incoming_srtp
from sfu_bench.load import NativeReader, Recorder, RtpCounter

native_counter = pytest.importorskip("sfu_bench._counter", reason="sfu_bench._counter is not built")

VIDEO, AUDIO, RTX, UNKNOWN = 0x1234, 0x4321, 0x5678, 0x9999


def rtp(seq: int, ssrc: int, ts: int, marker: bool = False, size: int = 20) -> bytes:
    return (
        bytes([0x80, 0x60 | (0x80 if marker else 0)])
        + seq.to_bytes(2, "big")
        + ts.to_bytes(4, "big")
        + ssrc.to_bytes(4, "big")
        + b"x" * size
    )


def traffic() -> list[bytes]:
    """Video across the sequence wrap with one loss, audio, RTX, an unknown SSRC, and
    datagrams that are not RTP (STUN, SRTCP): the same list for both counters."""
    packets = []
    for seq in (65533, 65534, 65535, 1, 2, 3):  # 0 is lost
        packets.append(rtp(seq, VIDEO, ts=3000 * (seq // 2), marker=seq % 2 == 1, size=900))
    for seq in range(10, 20):
        packets.append(rtp(seq, AUDIO, ts=960 * seq, size=80))
    packets.append(rtp(5, RTX, ts=0))
    packets.append(rtp(6, UNKNOWN, ts=0))
    packets.append(bytes([0x00, 0x01, 0x00, 0x00]) + b"\x21\x12\xa4\x42" + bytes(12))  # STUN
    packets.append(bytes([0x80, 0xC9, 0x00, 0x01]) + bytes(20))  # SRTCP (an RR)
    return packets


class Protocol(asyncio.DatagramProtocol):
    """Stands for aioice's StunProtocol: what is not RTP must still reach it."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.datagrams: list[tuple[bytes, Any]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))


async def count(native: bool) -> tuple[RtpCounter, Protocol, float, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    counter = RtpCounter(recorder, native=native)
    assert (counter.native is not None) == native
    counter.add_stream(VIDEO, "video-producer", "video", rtx_ssrc=RTX)
    counter.add_stream(AUDIO, "audio-producer", "audio", rtx_ssrc=None)
    transport, protocol = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))
    dtls = SimpleNamespace(
        transport=SimpleNamespace(_connection=SimpleNamespace(_protocols=[protocol]))
    )
    try:
        assert intercept_incoming_srtp(dtls, counter, reader=counter.reader()) == 1
        # The C counter reads the socket itself, or the Python handler is called.
        assert counter.native is None or counter.native.watching == 1
        recorder.recording = True
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sender:
            sender.bind(("127.0.0.1", 0))
            sender_address = sender.getsockname()
            sent_at = time.monotonic()
            for packet in traffic():
                sender.sendto(packet, transport.get_extra_info("sockname"))
            # Bounded: every datagram is on loopback already; let the loop read them.
            for _ in range(200):
                if counter.totals()["received"] == 16 and len(protocol.datagrams) == 2:
                    break
                await asyncio.sleep(0.01)
    finally:
        transport.close()
    if native:
        # Lost, the socket leaves the poller before it is closed (bounded wait).
        poller = NativeReader.poller()
        for _ in range(100):
            if not poller.sockets:
                break
            await asyncio.sleep(0.01)
        assert poller.sockets == 0
    return counter, protocol, sent_at, sender_address


@pytest.mark.parametrize("native", [False, True], ids=["python", "c"])
async def test_counter_counts_loss_rtx_and_unknown_and_passes_the_rest_on(native: bool) -> None:
    counter, protocol, sent_at, sender_address = await count(native)
    totals = counter.totals()
    assert totals == {
        "received": 16,  # 6 video + 10 audio
        "expected": 17,
        "bytes": 6 * 912 + 10 * 92,
        "streams_with_media": 2,
        "rtx": 1,
        "unknown": 1,
    }
    blocks = {block.ssrc: block for block in counter.report_blocks()}
    assert blocks[VIDEO].packets_lost == 1
    assert blocks[VIDEO].highest_seq == 0x10003
    assert blocks[VIDEO].fraction_lost == 256 // 7
    assert blocks[AUDIO].packets_lost == 0
    assert blocks[AUDIO].highest_seq == 19
    # The STUN and RTCP datagrams reached the protocol, with the sender's address.
    assert [data[1] for data, _ in protocol.datagrams] == [0x01, 0xC9]
    assert all(address == sender_address for _, address in protocol.datagrams)
    # A latency sample per new timestamp: video 32766, 32767, 0, 1; audio 10..19.
    received = counter.recorder.received
    assert [ts for producer, ts, _, _ in received if producer == "video-producer"] == [
        3000 * 32766,
        3000 * 32767,
        0,
        3000,
    ]
    assert [ts for producer, ts, _, _ in received if producer == "audio-producer"] == [
        960 * seq for seq in range(10, 20)
    ]
    for _, _, arrival, read in received:
        assert sent_at - 0.001 <= arrival <= read
    video = counter.streams[VIDEO]
    # The first whole video frame ends with the first marker (seq 65533).
    assert 0 < video.first_time <= video.first_frame_time


def test_c_counter_stamps_arrival_not_read() -> None:
    """A datagram that waited in the socket shows its wait: the kernel's stamp."""
    recorder = Recorder()
    recorder.recording = True
    counter = native_counter.RtpCounter(recorder)
    counter.add_stream(AUDIO, "audio-producer", True)
    poller = native_counter.Poller()  # read when this test says, not by an event loop
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        counter.watch(receiver.fileno())
        poller.add(receiver.fileno(), counter, lambda data, address: None)
        sent_at = time.monotonic()
        sender.sendto(rtp(1, AUDIO, ts=960), receiver.getsockname())
        assert select.select([poller.fileno()], [], [], 5.0)[0]
        time.sleep(0.1)  # the wait that the stamp must show
        poller.drain()
        [(_, ts, arrival, read)] = recorder.received
        poller.remove(receiver.fileno())
        assert poller.sockets == 0
    poller.close()
    assert ts == 960
    # (bounds far from the 0.1 s wait, for a loaded machine)
    assert sent_at - 0.001 <= arrival < sent_at + 0.03 < read
