"""The forwarding fast path with real SRTP and real sockets.

``SrtpCodec.protect_fields`` writes header fields + tail into the session
buffer and protects in place; ``WebRtcTransport.send_rtp_fields`` sends the
view of it. What reaches a loopback receiver is unprotected with the peer's
key and checked byte by byte; a full socket buffer must be dropped and
counted, never raised.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

import pytest
from pylibsrtp import Policy, Session

from sfu.aiortc_adapter import SrtpCodec, generate_certificate
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


@pytest.mark.parametrize("profile, key_length", PROFILES)
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


class _Router:
    app_data: dict[str, Any] = {"roomId": "room"}


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


async def test_send_rtp_fields_delivers_the_protected_packet() -> None:
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
            assert transport.rtp_packets_sent == 10
            assert transport.bytes_sent == 10 * (12 + 900 + 16)  # GCM tag: 16 bytes
            assert not transport.drops
        finally:
            transport.close()


async def test_send_rtp_fields_before_srtp_or_ice_sends_nothing() -> None:
    tx, _ = session_pair(*PROFILES[0])
    with _receiver() as receiver:
        transport = await _transport_to(receiver, tx)
        try:
            transport.ice_selected_tuple = None
            transport.send_rtp_fields(0x80, 96, 1, 1, 1, b"x")
            transport.ice_selected_tuple = receiver.getsockname()
            transport._rtp_out = None
            transport.send_rtp_fields(0x80, 96, 2, 1, 1, b"x")
            assert transport.rtp_packets_sent == 0 and transport.bytes_sent == 0
        finally:
            transport.close()


@pytest.mark.parametrize("error", [BlockingIOError, InterruptedError, ConnectionRefusedError])
async def test_send_rtp_fields_drops_and_counts_send_errors(error: type[OSError]) -> None:
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
            transport._endpoint.sendto = failing_sendto
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
        assert body[pos] == ext_id and body[pos + 1] == len(value)
        assert body[pos + 2 : pos + 2 + len(value)] == value
        pos += 2 + len(value)
    assert set(body[pos:]) <= {0}


def test_no_elements_no_block() -> None:
    assert build_extension_block([]) == b""
