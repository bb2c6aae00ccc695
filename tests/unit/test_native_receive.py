"""The C receive path (sfu/media/native/: ProducerPath, RtpReceiver) against
the Python one it shortcuts.

The Python path (``Producer.receive_rtp``) is the reference: the C path must
either take a packet with exactly the same outcome (what each consumer
sends, counters, stream statistics, RTCP toward the publisher, audio levels)
or leave it to Python untouched. The receiver test runs real SRTP over
loopback sockets.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import struct
import time
from typing import Any

import pylibsrtp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.control import ortc
from sfu.media.consumer import Consumer
from sfu.media.fastpath import (
    NATIVE_RECEIVE,
    STREAM_FIELDS,
    SrtpCodec,
    native_unprotect_function,
)
from sfu.media.producer import Producer
from sfu.models.rtp_uris import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_TOFFSET,
    URI_VIDEO_ORIENTATION,
)
from tests.unit.test_rewriter import ROUTER_CAPS, ROUTER_RTP_CAPABILITIES, RecordingTransport, rtp

pytestmark = pytest.mark.skipif(not NATIVE_RECEIVE, reason="sfu.media._native is not built")

AUDIO_SSRC = 1111
VIDEO_SSRC = 2222
RTX_SSRC = 3333


def producer_params(kind: str, abs_send_time: bool) -> dict[str, Any]:
    if kind == "audio":
        extensions = [{"uri": URI_MID, "id": 1}, {"uri": URI_AUDIO_LEVEL, "id": 2}]
        codecs: list[dict[str, Any]] = [
            {
                "mimeType": "audio/opus",
                "payloadType": 111,
                "clockRate": 48000,
                "channels": 2,
                "parameters": {},
                "rtcpFeedback": [],
            }
        ]
        encodings: list[dict[str, Any]] = [{"ssrc": AUDIO_SSRC}]
    else:
        extensions = [
            {"uri": URI_MID, "id": 1},
            {"uri": URI_VIDEO_ORIENTATION, "id": 5},
            {"uri": URI_TOFFSET, "id": 6},
        ]
        feedback = [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]
        codecs = [
            {
                "mimeType": "video/VP8",
                "payloadType": 100,
                "clockRate": 90000,
                "parameters": {},
                "rtcpFeedback": feedback,
            },
            {
                "mimeType": "video/rtx",
                "payloadType": 101,
                "clockRate": 90000,
                "parameters": {"apt": 100},
                "rtcpFeedback": [],
            },
        ]
        encodings = [{"ssrc": VIDEO_SSRC, "rtx": {"ssrc": RTX_SSRC}}]
    if abs_send_time:
        extensions.append({"uri": URI_ABS_SEND_TIME, "id": 3})
    return {
        "mid": "0",
        "codecs": codecs,
        "headerExtensions": extensions,
        "encodings": encodings,
        "rtcp": {"cname": "c", "reducedSize": True},
    }


def consumer_caps(skip_uri: str | None) -> dict[str, Any]:
    """A device's capabilities; without ``skip_uri``, a different layout."""
    return {
        "codecs": [dict(c) for c in ROUTER_CAPS["codecs"]],
        "headerExtensions": [
            dict(e, direction="sendrecv")
            for e in ROUTER_CAPS["headerExtensions"]
            if e["direction"] == "sendrecv" and e["uri"] != skip_uri
        ],
    }


class Side:
    """A producer and three consumers in two extension layouts."""

    def __init__(self, kind: str, abs_send_time: bool = False) -> None:
        params = ortc.validate_rtp_parameters(producer_params(kind, abs_send_time))
        mapping = ortc.get_producer_rtp_parameters_mapping(params, ROUTER_RTP_CAPABILITIES)
        consumable = ortc.get_consumable_rtp_parameters(
            kind, params, ROUTER_RTP_CAPABILITIES, mapping
        )
        self.transport = RecordingTransport()
        self.transport.app_data = {"peerId": "alice"}  # type: ignore[attr-defined]
        self.transport.log_extra = {}  # type: ignore[attr-defined]
        self.producer = Producer(
            producer_id="p",
            kind=kind,
            rtp_parameters=params,
            rtp_mapping=mapping,
            transport=self.transport,  # type: ignore[arg-type]
            paused=False,
            app_data={},
        )
        self.levels: list[int] = []
        self.producer.audio_level_sink = lambda _producer, level: self.levels.append(level)
        skipped = URI_AUDIO_LEVEL if kind == "audio" else URI_TOFFSET
        self.consumers: list[Consumer] = []
        self.sinks: list[RecordingTransport] = []
        for index, skip in enumerate([None, skipped, None]):
            consumer_params = ortc.get_consumer_rtp_parameters(
                consumable, ortc.validate_rtp_capabilities(consumer_caps(skip))
            )
            consumer_params.mid = str(index)
            sink = RecordingTransport()
            consumer = Consumer(
                consumer_id=f"c{index}",
                producer=self.producer,
                rtp_parameters=consumer_params,
                transport=sink,  # type: ignore[arg-type]
                paused=False,
                app_data={},
            )
            self.producer.add_consumer(consumer)
            self.consumers.append(consumer)
            self.sinks.append(sink)

    def state(self) -> dict[str, Any]:
        streams = {
            ssrc: {name: getattr(stream, name) for name in STREAM_FIELDS}
            for ssrc, stream in self.producer.streams.items()
        }
        return {
            # (each side's consumers have SSRCs of their own)
            "sent": [[p[:8] + p[12:] for p in sink.rtp] for sink in self.sinks],
            "rtcp": list(self.transport.rtcp),
            "drops": dict(self.transport.drops),
            "levels": list(self.levels),
            "streams": streams,
            "received": (self.producer.packets_received, self.producer.bytes_received),
            "repaired": self.producer.packets_repaired,
            "consumers": [
                (c.rewriter.packets_sent, c.rewriter.packets_dropped_late) for c in self.consumers
            ],
        }


def receive_in_c(side: Side, packet: bytes, now: float) -> bool:
    """As the RtpReceiver does: its path for a known media SSRC, else Python."""
    ssrc = struct.unpack_from("!I", packet, 8)[0] if len(packet) >= 12 else -1
    stream = side.producer.streams.get(ssrc)
    path = side.producer.native_path
    assert path is not None
    if stream is not None and path.receive(stream, packet, now):
        return True
    side.producer.receive_rtp(packet, now)
    return False


# One step of a publisher: how the sequence number moves, what the packet
# carries, and what changes around it.
SEQ_STEPS = st.one_of(
    st.just(1),
    st.just(1),
    st.just(1),
    st.just(1),
    st.integers(min_value=2, max_value=5),  # loss
    st.just(0),  # duplicate
    st.integers(min_value=-5, max_value=-1),  # late or retransmitted
    st.integers(min_value=102, max_value=200),  # a gap too wide to repair
    st.integers(min_value=3001, max_value=30000),  # a restart
)
EXTENSIONS = st.sampled_from(["none", "level", "all", "unknown", "two-byte", "padding-only"])
ACTIONS = st.sampled_from(
    ["none"] * 8 + ["pause", "resume", "resync", "resync-keyframe", "rtx", "csrc", "padding"]
)
STEPS = st.lists(
    st.tuples(SEQ_STEPS, EXTENSIONS, ACTIONS, st.booleans(), st.integers(0, 255)),
    min_size=1,
    max_size=120,
)


def build_packet(
    kind: str, seq: int, ts: int, extensions: str, action: str, key: bool, level: int
) -> bytes:
    ssrc = AUDIO_SSRC if kind == "audio" else VIDEO_SSRC
    pt = 111 if kind == "audio" else 100
    payload = bytes([0x10, 0x00 if key else 0x01]) + bytes(range(40))
    elements: list[tuple[int, bytes]] = []
    if extensions in ("level", "all"):
        elements.append((2, bytes([0x80 | (level & 0x7F)])) if kind == "audio" else (5, b"\x01"))
    if extensions == "all":
        elements.append((1, b"0"))
        if kind == "video":
            elements.append((6, b"\x00\x00\x07"))
    if extensions == "unknown":
        elements.append((9, b"\xaa\xbb"))
    packet = bytearray(rtp(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, payload, elements))
    if extensions == "two-byte" and elements == []:
        block = b"\x10\x00\x00\x01" + bytes([2 if kind == "audio" else 5, 1, 0x85, 0])
        packet = bytearray(packet[:12] + block + packet[12:])
        packet[0] |= 0x10
    if extensions == "padding-only":
        block = b"\xbe\xde\x00\x01\x00\x00\x00\x00"
        packet = bytearray(packet[:12] + block + packet[12:])
        packet[0] |= 0x10
    if action == "csrc":
        packet = bytearray(packet[:12] + b"\x01\x02\x03\x04" + packet[12:])
        packet[0] = (packet[0] & 0xF0) | 1
    if action == "padding":
        packet += b"\x00\x00\x03"
        packet[0] |= 0x20
    return bytes(packet)


def rtx_of(packet: bytes, rtx_seq: int) -> bytes:
    """The RTX retransmission of a video packet (RFC 4588), without extensions."""
    seq = packet[2:4]
    header = bytearray(packet[:12])
    header[0] &= 0xE0  # no CSRCs, extension or padding in this one
    header[1] = (header[1] & 0x80) | 101
    struct.pack_into("!HII", header, 2, rtx_seq, struct.unpack_from("!I", packet, 4)[0], RTX_SSRC)
    return bytes(header) + seq + b"\x10\x01rtx payload"


async def run_both(kind: str, steps: list[tuple[int, str, str, bool, int]]) -> int:
    """Feed the same packets to a C-path side and a Python side; compare after each."""
    native, python = Side(kind), Side(kind)
    seq, ts, rtx_seq, now = 1000, 5000, 0, 100.0
    taken = 0
    for step, extensions, action, key, level in steps:
        seq += step
        ts += 960 * max(step, 0)
        now += 0.02
        if action in ("pause", "resume"):
            for side in (native, python):
                side.producer.paused = action == "pause"
        elif action.startswith("resync"):
            for side in (native, python):
                side.consumers[level % 3].resync(wait_for_keyframe=action == "resync-keyframe")
        packet = build_packet(kind, seq, ts, extensions, action, key, level)
        if action == "rtx" and kind == "video":
            rtx_seq += 1
            packet = rtx_of(packet, rtx_seq)
        taken += receive_in_c(native, packet, now)
        python.producer.receive_rtp(packet, now)
        assert native.state() == python.state(), (step, extensions, action)
    return taken


@pytest.mark.parametrize("kind", ["audio", "video"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_the_c_path_takes_a_packet_exactly_as_python_would_or_leaves_it(
    kind: str, steps: list[tuple[int, str, str, bool, int]]
) -> None:
    asyncio.run(run_both(kind, steps))


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_in_order_packets_take_the_c_path_and_others_do_not(kind: str) -> None:
    async def main() -> None:
        steps = [(1, "level", "none", True, 30)] * 20  # the first starts the stream in Python
        steps += [(3, "level", "none", False, 30), (1, "all", "none", False, 30)]
        steps += [(1, "two-byte", "none", False, 30), (1, "level", "padding", False, 30)]
        taken = await run_both(kind, steps)
        assert taken == 19 + 1 + 1  # not the first, not the gap of 3, not two-byte
        native = Side(kind)
        packet = build_packet(kind, 1, 0, "level", "none", True, 5)
        assert receive_in_c(native, packet, 1.0) is False  # not started: Python
        assert receive_in_c(native, build_packet(kind, 2, 960, "level", "none", True, 5), 1.02)
        assert native.levels == ([5, 5] if kind == "audio" else [])

    asyncio.run(main())


def test_abs_send_time_is_the_send_time_in_both_paths() -> None:
    async def main() -> None:
        side = Side("video", abs_send_time=True)
        first = build_packet("video", 1, 0, "none", "none", True, 0)
        side.producer.receive_rtp(first, 1.0)
        packet = rtp(100, 2, 3000, VIDEO_SSRC, b"\x10\x01payload", [(3, b"\x00\x00\x00")])
        before = time.time()
        assert receive_in_c(side, packet, 1.02)
        after = time.time()
        sent = side.sinks[0].rtp[-1]
        # The block: 0xBEDE, then abs-send-time (router id 4, 3 bytes)
        ext_start = 12 + 4
        assert sent[12:14] == b"\xbe\xde"
        assert sent[ext_start] == (4 << 4) | 2
        value = int.from_bytes(sent[ext_start + 1 : ext_start + 4], "big")
        low = int(before * (1 << 18)) & 0xFFFFFF
        high = int(after * (1 << 18)) & 0xFFFFFF
        assert low <= value <= high or high < low  # (unless the 64 s field wrapped)

    asyncio.run(main())


def test_a_failing_audio_level_sink_fails_the_producer_on_the_c_path() -> None:
    async def main() -> None:
        side = Side("audio")
        side.producer.receive_rtp(build_packet("audio", 1, 0, "level", "none", True, 1), 1.0)
        sent = [len(sink.rtp) for sink in side.sinks]

        def broken(_producer: Producer, _level: int) -> None:
            raise RuntimeError("injected")

        side.producer.audio_level_sink = broken
        closed: list[str] = []
        side.producer.on("serverclose", closed.append)
        path = side.producer.native_path
        assert path is not None
        packet = build_packet("audio", 2, 960, "level", "none", True, 1)
        # Taken, and the failure is the producer's: closed, as the transport
        # does for an exception out of the Python path.
        assert path.receive(side.producer.streams[AUDIO_SSRC], packet, 1.02) is True
        assert closed == ["error"]
        assert side.producer.closed
        assert [len(sink.rtp) for sink in side.sinks] == sent

    asyncio.run(main())


# ---- the receiver: real sockets, real SRTP ---------------------------------


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def wait_readable(sock: socket.socket) -> None:
    """Loopback queues a datagram within sendto; this only bounds the wait."""
    readable, _, _ = select.select([sock], [], [], 2.0)
    assert readable, "nothing arrived"


def srtp_pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    key = os.urandom(30)
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return tx, rx


def test_the_receiver_takes_in_order_srtp_and_hands_everything_else_to_python() -> None:
    async def main() -> None:
        from sfu.media._native import RtpReceiver

        side = Side("video")
        server, client, stranger = sockets = (
            loopback_socket(),
            loopback_socket(),
            loopback_socket(),
        )
        try:
            datagrams: list[tuple[bytes, tuple[Any, ...]]] = []
            left: list[bytes] = []

            def on_rtp(packet: bytes) -> None:
                left.append(packet)
                side.producer.receive_rtp(packet, time.monotonic())

            receiver = RtpReceiver(
                server.fileno(),
                native_unprotect_function(),
                lambda data, addr: datagrams.append((data, addr)),
                on_rtp,
            )
            tx, rx = srtp_pair()
            path = side.producer.native_path
            assert path is not None
            receiver.add_stream(VIDEO_SSRC, path, side.producer.streams[VIDEO_SSRC])
            target = server.getsockname()

            def send(sock: socket.socket, packet: bytes) -> None:
                sock.sendto(packet, target)

            def drain() -> None:
                wait_readable(server)
                receiver.drain()

            first = build_packet("video", 10, 0, "level", "none", True, 0)
            # No keys yet: everything is Python's, as it came.
            send(client, tx.protect(first))
            drain()
            assert len(datagrams) == 1
            assert datagrams[0][1] == client.getsockname()
            datagrams.clear()

            codec = SrtpCodec(rx)
            receiver.set_session(*codec.native_session())
            receiver.set_address(client.getsockname())
            send(client, tx.protect(build_packet("video", 11, 90, "level", "none", True, 0)))
            drain()
            assert len(left) == 1  # not started yet: Python starts the stream
            for seq in range(12, 22):
                send(
                    client,
                    tx.protect(build_packet("video", seq, seq * 90, "all", "none", False, 0)),
                )
            drain()
            assert len(left) == 1, "in-order packets took the C path"
            assert [len(sink.rtp) for sink in side.sinks] == [11, 11, 11]
            assert receiver.rtp_packets_received == 10

            send(client, tx.protect(build_packet("video", 25, 0, "all", "none", False, 0)))  # a gap
            send(stranger, tx.protect(build_packet("video", 26, 0, "all", "none", False, 0)))
            send(client, b"\x81\xc9\x00\x01" + b"\x00" * 20)  # RTCP
            send(client, b"\x80\x64" + os.urandom(58))  # SRTP that does not authenticate
            send(client, b"\x00\x01\x00\x00" + os.urandom(16))  # STUN-ish
            drain()
            assert len(left) == 2
            assert struct.unpack_from("!H", left[1], 2)[0] == 25
            assert [addr for _, addr in datagrams] == [
                stranger.getsockname(),
                client.getsockname(),
                client.getsockname(),
            ]
            assert receiver.unprotect_failures == 1
            assert [len(sink.rtp) for sink in side.sinks] == [12, 12, 12]
            assert side.producer.streams[VIDEO_SSRC].max_seq == 25

            receiver.remove_stream(VIDEO_SSRC)
            send(client, tx.protect(build_packet("video", 27, 0, "all", "none", False, 0)))
            drain()
            assert len(left) == 3  # an SSRC it does not route: Python
            receiver.close()
            send(client, tx.protect(build_packet("video", 28, 0, "all", "none", False, 0)))
            receiver.drain()  # closed: reads nothing
            assert len(left) == 3
            assert len(datagrams) == 3
        finally:
            for sock in sockets:
                sock.close()

    asyncio.run(main())


def test_a_shared_socket_reads_for_the_transport_whose_selected_tuple_sent() -> None:
    """Single-port mode: the socket's receiver takes a transport's RTP on that
    transport's receiver (its child), by the sender's address."""

    async def main() -> None:
        from sfu.media._native import RtpReceiver

        side = Side("audio")
        server, client, other = loopback_socket(), loopback_socket(), loopback_socket()
        try:
            demuxed: list[tuple[Any, ...]] = []
            left: list[bytes] = []

            def never(packet: bytes) -> None:
                raise AssertionError("the shared socket's receiver has no keys")

            shared = RtpReceiver(
                server.fileno(),
                native_unprotect_function(),
                lambda data, addr: demuxed.append(addr),
                never,
            )
            transport = RtpReceiver(
                -1, native_unprotect_function(), lambda data, addr: None, left.append
            )
            shared.add_child(transport)
            tx, rx = srtp_pair()
            transport.set_session(*SrtpCodec(rx).native_session())
            transport.set_address(client.getsockname())
            path = side.producer.native_path
            assert path is not None
            transport.add_stream(AUDIO_SSRC, path, side.producer.streams[AUDIO_SSRC])
            side.producer.receive_rtp(build_packet("audio", 1, 0, "level", "none", True, 3), 1.0)

            target = server.getsockname()
            for seq in range(2, 7):
                packet = build_packet("audio", seq, seq * 960, "level", "none", True, 3)
                client.sendto(tx.protect(packet), target)
            other.sendto(tx.protect(build_packet("audio", 7, 0, "level", "none", True, 3)), target)
            wait_readable(server)
            shared.drain()
            assert left == []
            assert [len(sink.rtp) for sink in side.sinks] == [6, 6, 6]
            assert transport.rtp_packets_received == 5
            assert shared.rtp_packets_received == 0
            assert demuxed == [other.getsockname()]

            shared.remove_child(transport)
            client.sendto(tx.protect(build_packet("audio", 8, 0, "level", "none", True, 3)), target)
            wait_readable(server)
            shared.drain()
            assert demuxed == [other.getsockname(), client.getsockname()]
            assert [len(sink.rtp) for sink in side.sinks] == [6, 6, 6]
        finally:
            for sock in (server, client, other):
                sock.close()

    asyncio.run(main())
