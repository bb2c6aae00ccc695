"""The forwarding fast path with real SRTP and real sockets.

``SrtpCodec.protect_fields`` writes header fields + tail into the session
buffer and protects in place; ``WebRtcTransport.send_rtp_fields`` sends the
view of it, or (``native``) hands header fields and tail to the C extension's
sender, which does the same in one call. What reaches a loopback receiver is
unprotected with the peer's key and checked byte by byte, on both paths; a
send that fails must be dropped and counted, never raised.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any, ClassVar

import pytest
from pylibsrtp import Policy, Session

from sfu.aiortc_adapter import generate_certificate
from sfu.media import fastpath
from sfu.media.fastpath import NATIVE_PROTECT_FAILED, NATIVE_SEND_FAILED, SrtpCodec
from sfu.media.rtp import build_extension_block, header_bounds, iter_one_byte_extensions
from sfu.media.webrtc_transport import WebRtcTransport

PROFILES = [
    (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
    (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
]


def session_pair(profile: int, key_length: int) -> tuple[Session, Session]:
    key = os.urandom(key_length)
    tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
    rx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
    return tx, rx


@pytest.mark.parametrize(("profile", "key_length"), PROFILES)
def test_protect_fields_equals_protect_of_the_built_packet(profile: int, key_length: int) -> None:
    tx, rx = session_pair(profile, key_length)
    codec = SrtpCodec(tx)
    tail = b"\xbe\xde\x00\x01\x22\x01\x02\x03" + os.urandom(1100)
    for seq in (65534, 65535, 0, 1):
        protected = codec.protect_fields(0x90, 0x80 | 101, seq, 123456789, 0xCAFEBABE, tail)
        assert protected is not None
        clear = rx.unprotect(bytes(protected))
        assert clear == struct.pack("!BBHII", 0x90, 0x80 | 101, seq, 123456789, 0xCAFEBABE) + tail


def test_protect_fields_refuses_what_does_not_fit() -> None:
    tx, _ = session_pair(*PROFILES[0])
    codec = SrtpCodec(tx)
    assert codec.protect_fields(0x80, 96, 1, 1, 1, b"x" * 1500) is None
    # the codec still works after a refusal
    assert codec.protect_fields(0x80, 96, 2, 1, 1, b"x" * 100) is not None


def test_protect_fields_rejects_a_replayed_sequence_number() -> None:
    tx, _ = session_pair(*PROFILES[0])
    codec = SrtpCodec(tx)
    assert codec.protect_fields(0x80, 96, 7, 1, 1, b"x" * 100) is not None
    # libsrtp refuses to protect the same (ssrc, seq) twice: None, not an exception
    assert codec.protect_fields(0x80, 96, 7, 1, 1, b"x" * 100) is None


def test_the_c_extension_is_built() -> None:
    # make test installs the package with it; without it every other native
    # test here would quietly test the Python path twice.
    assert fastpath.NATIVE_SEND, "sfu.media._native is not built"


@pytest.fixture(params=["native", "python"])
def send_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a transport test through the C sender and through the Python one."""
    if request.param == "python":
        monkeypatch.setattr(fastpath, "native", None)
    return str(request.param)


def sender_counts(native: Any) -> tuple[int, int, int, int]:
    return (native.packets_sent, native.bytes_sent, native.protect_failures, native.send_failures)


@pytest.mark.parametrize(("profile", "key_length"), PROFILES)
def test_native_sender_sends_what_protect_fields_makes(profile: int, key_length: int) -> None:
    # Two outbound sessions with one key: the same packets protect to the
    # same bytes, so the C path must send exactly what the Python path builds.
    key = os.urandom(key_length)
    python_tx, native_tx = (
        Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
        for _ in range(2)
    )
    python_codec, native_codec = SrtpCodec(python_tx), SrtpCodec(native_tx)
    with _receiver() as receiver, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        native = native_codec.native_sender(sender, receiver.getsockname())
        assert native is not None
        send = native.send_fields
        tail = b"\xbe\xde\x00\x01\x22\x01\x02\x03" + os.urandom(1100)
        for seq in (65534, 65535, 0, 1):
            expected = python_codec.protect_fields(0x90, 0xE5, seq, 0xFFFFFFFF, 0xCAFEBABE, tail)
            assert expected is not None
            assert send(0x90, 0xE5, seq, 0xFFFFFFFF, 0xCAFEBABE, tail) == len(expected)
            assert receiver.recv(2048) == bytes(expected)
        # any buffer will do as the tail, as for the Python path
        for seq, view in ((2, memoryview(tail)[5:]), (3, bytearray(b"abc"))):
            expected = python_codec.protect_fields(0x80, 96, seq, 1, 2, bytes(view))
            assert expected is not None
            assert send(0x80, 96, seq, 1, 2, view) == len(expected)  # type: ignore[arg-type]  # the point: any buffer
            assert receiver.recv(2048) == bytes(expected)


def test_native_sender_refuses_what_does_not_fit_or_libsrtp_refuses() -> None:
    tx, rx = session_pair(*PROFILES[1])
    codec = SrtpCodec(tx)
    with _receiver() as receiver, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        native = codec.native_sender(sender, receiver.getsockname())
        assert native is not None
        send = native.send_fields
        assert send(0x80, 96, 1, 1, 1, b"x" * 2000) == NATIVE_PROTECT_FAILED
        assert send(0x80, 96, 2, 1, 1, b"x" * 100) == 12 + 100 + 10
        assert send(0x80, 96, 2, 1, 1, b"x" * 100) == NATIVE_PROTECT_FAILED  # a replay
        assert (sender_counts(native)) == (1, 122, 2, 0)
        assert rx.unprotect(receiver.recv(2048)).endswith(b"x" * 100)
        with pytest.raises(TypeError):
            send(0x80, 96, 3, 1, 1, "not bytes")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            send(0x80, 96, 3)  # type: ignore[call-arg]


def test_both_paths_take_the_same_largest_packet() -> None:
    # pylibsrtp's session buffer (1500 bytes) less the largest SRTP trailer:
    # a packet one of them sends, the other must send too (and RTX it).
    tx, _ = session_pair(*PROFILES[1])
    codec = SrtpCodec(tx)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        native = codec.native_sender(sender, sender.getsockname())
        assert native is not None
        largest = 1500 - 144 - 12
        assert codec.protect_fields(0x80, 96, 1, 1, 1, b"x" * largest) is not None
        assert codec.protect_fields(0x80, 96, 2, 1, 1, b"x" * (largest + 1)) is None
        assert native.send_fields(0x80, 96, 3, 1, 1, b"x" * largest) > 0
        assert native.send_fields(0x80, 96, 4, 1, 1, b"x" * (largest + 1)) == NATIVE_PROTECT_FAILED


def test_native_sender_reports_a_failed_send() -> None:
    tx, _ = session_pair(*PROFILES[1])
    codec = SrtpCodec(tx)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        # an IPv6 destination from an IPv4 socket: sendto fails at once
        native = codec.native_sender(sender, ("::1", 9, 0, 0))
        assert native is not None
        assert native.send_fields(0x80, 96, 1, 1, 1, b"x" * 100) == NATIVE_SEND_FAILED
        assert sender_counts(native) == (1, 0, 0, 1)


def test_native_sender_only_for_plain_udp_addresses() -> None:
    tx, _ = session_pair(*PROFILES[1])
    codec = SrtpCodec(tx)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        assert codec.native_sender(sender, ("127.0.0.1", 5000, "tcp")) is None
        assert codec.native_sender(sender, ("fe80::1", 5000, 0, 2)) is None  # scoped
        with pytest.raises(ValueError, match="not a numeric IP address"):
            codec.native_sender(sender, ("localhost", 5000))


class _Router:
    app_data: ClassVar[dict[str, Any]] = {"roomId": "room"}


async def _transport_to(receiver: socket.socket, tx: Session) -> WebRtcTransport:
    transport = WebRtcTransport(
        router=_Router(),  # type: ignore[arg-type]
        announced_ip="127.0.0.1",
        certificate=generate_certificate(),
        app_data={"peerId": "p"},
    )
    await transport.start("127.0.0.1", 40000, 49999)
    transport._tx_srtp = tx
    transport._rtp_out = SrtpCodec(tx)
    transport.ice_selected_tuple = receiver.getsockname()
    return transport


def _receiver(buffer: int = 1 << 20) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


async def test_send_rtp_fields_delivers_the_protected_packet(send_path: str) -> None:
    tx, rx = session_pair(*PROFILES[0])
    with _receiver() as receiver:
        transport = await _transport_to(receiver, tx)
        try:
            tail = os.urandom(900)
            for seq in range(10, 20):
                transport.send_rtp_fields(0x80, 96, seq, seq * 3000, 4242, tail)
            for seq in range(10, 20):
                clear = rx.unprotect(receiver.recv(2048))
                assert clear == struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 4242) + tail
            stats = transport.get_stats()[0]
            assert stats["rtpPacketsSent"] == 10
            assert stats["bytesSent"] == 10 * (12 + 900 + 16)  # GCM tag: 16 bytes
            assert not stats["droppedPackets"]
            assert (transport._fast.sender is not None) == (send_path == "native")
            counters = transport.counters()
            assert counters["rtp_packets_sent"] == 10
            assert not counters["dropped:send-failed"]
        finally:
            transport.close()


async def test_send_rtp_fields_follows_the_selected_tuple_and_stops_at_close(
    send_path: str,
) -> None:
    tx, rx = session_pair(*PROFILES[0])
    with _receiver() as first, _receiver() as second:
        transport = await _transport_to(first, tx)
        try:
            transport.send_rtp_fields(0x80, 96, 1, 0, 7, b"one")
            assert rx.unprotect(first.recv(2048)).endswith(b"one")
            # ICE moves to another address (a new nomination, an ICE restart)
            transport.ice_selected_tuple = second.getsockname()
            transport.send_rtp_fields(0x80, 96, 2, 0, 7, b"two")
            assert rx.unprotect(second.recv(2048)).endswith(b"two")
            transport.close()
            transport.send_rtp_fields(0x80, 96, 3, 0, 7, b"three")
            second.settimeout(0.2)
            with pytest.raises(TimeoutError):
                second.recv(2048)
            assert transport.get_stats()[0]["rtpPacketsSent"] == 2
        finally:
            transport.close()


async def test_send_rtp_fields_before_srtp_or_ice_sends_nothing(send_path: str) -> None:
    tx, _ = session_pair(*PROFILES[0])
    with _receiver() as receiver:
        transport = await _transport_to(receiver, tx)
        try:
            transport.ice_selected_tuple = None
            transport.send_rtp_fields(0x80, 96, 1, 1, 1, b"x")
            transport.ice_selected_tuple = receiver.getsockname()
            transport._rtp_out = None
            transport.send_rtp_fields(0x80, 96, 2, 1, 1, b"x")
            stats = transport.get_stats()[0]
            assert stats["rtpPacketsSent"] == 0
            assert stats["bytesSent"] == 0
        finally:
            transport.close()


async def test_native_send_rtp_fields_drops_and_counts_send_errors() -> None:
    tx, rx = session_pair(*PROFILES[0])
    with _receiver() as receiver:
        transport = await _transport_to(receiver, tx)
        try:
            # an IPv6 destination from the transport's IPv4 socket: every send fails
            transport.ice_selected_tuple = ("::1", receiver.getsockname()[1], 0, 0)
            for seq in range(5):
                transport.send_rtp_fields(0x80, 96, seq, 0, 1, b"y" * 1200)
            assert transport._fast.sender is not None
            stats = transport.get_stats()[0]
            assert stats["droppedPackets"] == {"send-failed": 5}
            assert stats["bytesSent"] == 0
            # back to the receiver: the counters of the old sender are kept
            transport.ice_selected_tuple = receiver.getsockname()
            transport.send_rtp_fields(0x80, 96, 5, 0, 1, b"z")
            assert rx.unprotect(receiver.recv(2048)).endswith(b"z")
            # a packet libsrtp cannot take: counted as such, nothing sent
            transport.send_rtp_fields(0x80, 96, 6, 0, 1, b"w" * 3000)
            stats = transport.get_stats()[0]
            assert stats["droppedPackets"] == {"send-failed": 5, "srtp-protect-failed": 1}
            assert stats["rtpPacketsSent"] == 6
            assert stats["bytesSent"] == 12 + 1 + 16
        finally:
            transport.close()


@pytest.mark.parametrize("error", [BlockingIOError, InterruptedError, ConnectionRefusedError])
async def test_send_rtp_fields_drops_and_counts_send_errors(
    error: type[OSError], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastpath, "native", None)  # the Python path's socket.sendto
    # A loopback receiver with a full buffer drops silently: the sender sees
    # EAGAIN only with a full send buffer, so make the socket say so.
    tx, rx = session_pair(*PROFILES[0])
    with _receiver() as receiver:
        transport = await _transport_to(receiver, tx)
        assert transport._endpoint is not None
        real_sendto = transport._endpoint.sendto

        def failing_sendto(data: Any, addr: Any) -> int:
            raise error()

        try:
            transport._endpoint.sendto = failing_sendto  # type: ignore[assignment]  # a stand-in
            for seq in range(5):
                transport.send_rtp_fields(0x80, 96, seq, 0, 1, b"y" * 1200)
            assert transport.drops["send-failed"] == 5
            assert transport.bytes_sent == 0
            transport._endpoint.sendto = real_sendto
            transport.send_rtp_fields(0x80, 96, 5, 0, 1, b"z")
            assert rx.unprotect(receiver.recv(2048)).endswith(b"z")
            assert transport.drops["send-failed"] == 5
        finally:
            transport.close()


# ---- header extension blocks (built once per consumer layout) --------------


@pytest.mark.parametrize(
    "elements",
    [
        [(3, b"\x01\x02\x03")],
        [(1, b"a"), (2, b"\x80")],
        [(14, b"x" * 16), (5, b"yy")],
        [(1, b"abcd")],  # needs no padding: 4 + 1 + 4 = 9 -> 12
    ],
)
def test_one_byte_block_round_trips(elements: list[tuple[int, bytes]]) -> None:
    block = build_extension_block(elements)
    assert block[:2] == b"\xbe\xde"
    assert len(block) % 4 == 0
    assert struct.unpack_from("!H", block, 2)[0] == (len(block) - 4) // 4
    packet = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + block + b"payload"
    _, ext_start, ext_end, _ = header_bounds(packet)
    found = [(i, packet[s:e]) for i, s, e in iter_one_byte_extensions(packet, ext_start, ext_end)]
    assert found == elements


@pytest.mark.parametrize(
    "elements", [[(15, b"x")], [(1, b"x" * 17)], [(1, b""), (2, b"ab")], [(200, b"abc")]]
)
def test_two_byte_block_when_an_element_does_not_fit_one_byte(
    elements: list[tuple[int, bytes]],
) -> None:
    block = build_extension_block(elements)
    assert block[:2] == b"\x10\x00"
    assert len(block) % 4 == 0
    assert struct.unpack_from("!H", block, 2)[0] == (len(block) - 4) // 4
    body = block[4:]
    pos = 0
    for ext_id, value in elements:
        assert body[pos] == ext_id
        assert body[pos + 1] == len(value)
        assert body[pos + 2 : pos + 2 + len(value)] == value
        pos += 2 + len(value)
    assert set(body[pos:]) <= {0}


def test_no_elements_no_block() -> None:
    assert build_extension_block([]) == b""
