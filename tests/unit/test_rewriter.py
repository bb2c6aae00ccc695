"""The forwarding path on raw bytes: Producer -> Consumer header rewriting.

Uses the real ortc output for parameters and a recording stand-in for the
transport (no sockets): what goes out is checked byte by byte.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import aiortc.rtp as aiortc_rtp
import pytest

from sfu.config import DEFAULT_MEDIA_CODECS
from sfu.control import ortc
from sfu.media import fastpath, rtcp
from sfu.media.consumer import Consumer
from sfu.media.producer import Producer
from sfu.media.rtp import build_extension_block, header_bounds, iter_one_byte_extensions
from sfu.media.transport import RTCP_MAX_COMPOUND, Transport
from sfu.models import RtpMapping, RtpParameters
from sfu.models.rtp_uris import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID

ROUTER_RTP_CAPABILITIES = ortc.generate_router_rtp_capabilities(
    [c.to_mediasoup() for c in DEFAULT_MEDIA_CODECS]
)
ROUTER_CAPS = ROUTER_RTP_CAPABILITIES.to_wire()


@pytest.fixture(autouse=True, params=["native", "python"])
def rewriter_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the C rewriter and with the Python one."""
    if request.param == "python":
        monkeypatch.setattr(fastpath, "native", None)
    else:
        assert fastpath.NATIVE_SEND, "sfu.media._native is not built"
    return str(request.param)


class RecordingTransport:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.drops: dict[str, int] = {}
        self.rtcp_ssrc = 1234
        self.fir_seq = 0
        self.rtp_fields_sender = self.send_rtp_fields

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def send_rtp_fields(
        self, b0: int, b1: int, seq: int, timestamp: int, ssrc: int, tail: bytes
    ) -> None:
        # Consumers send header fields + tail; the base class builds the packet for send_rtp.
        Transport.send_rtp_fields(self, b0, b1, seq, timestamp, ssrc, tail)  # type: ignore[arg-type]  # a stand-in

    def count_drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


def router_ext_id(uri: str, kind: str) -> int:
    return int(
        next(
            e["preferredId"]
            for e in ROUTER_CAPS["headerExtensions"]
            if e["uri"] == uri and e["kind"] == kind
        )
    )


def audio_params() -> dict[str, Any]:
    # aiortc's real audio produce parameters: opus 96, mid=1, audio-level=2
    return {
        "mid": "0",
        "codecs": [
            {
                "mimeType": "audio/opus",
                "payloadType": 96,
                "clockRate": 48000,
                "channels": 2,
                "parameters": {},
                "rtcpFeedback": [],
            }
        ],
        "headerExtensions": [{"uri": URI_MID, "id": 1}, {"uri": URI_AUDIO_LEVEL, "id": 2}],
        "encodings": [{"ssrc": 1111}],
        "rtcp": {"cname": "cname-a", "reducedSize": True},
    }


def video_params() -> dict[str, Any]:
    fb = [
        {"type": "nack", "parameter": ""},
        {"type": "nack", "parameter": "pli"},
        {"type": "ccm", "parameter": "fir"},
        {"type": "goog-remb", "parameter": ""},
    ]
    return {
        "mid": "1",
        "codecs": [
            {
                "mimeType": "video/VP8",
                "payloadType": 97,
                "clockRate": 90000,
                "parameters": {},
                "rtcpFeedback": fb,
            },
            {
                "mimeType": "video/rtx",
                "payloadType": 98,
                "clockRate": 90000,
                "parameters": {"apt": 97},
                "rtcpFeedback": [],
            },
        ],
        "headerExtensions": [{"uri": URI_MID, "id": 1}, {"uri": URI_ABS_SEND_TIME, "id": 3}],
        "encodings": [{"ssrc": 2222, "rtx": {"ssrc": 3333}}],
        "rtcp": {"cname": "cname-v", "reducedSize": True},
    }


def consumer_caps() -> dict[str, Any]:
    """What a mediasoup-client device sends: the router's codecs and extensions."""
    return {
        "codecs": [dict(c) for c in ROUTER_CAPS["codecs"]],
        "headerExtensions": [
            dict(e, direction="sendrecv")
            for e in ROUTER_CAPS["headerExtensions"]
            if e["direction"] == "sendrecv"
        ],
    }


def resolve(kind: str) -> tuple[RtpParameters, RtpMapping, RtpParameters]:
    """What the control layer resolves for a producer (ORTC): parameters, mapping, consumable."""
    params = ortc.validate_rtp_parameters(audio_params() if kind == "audio" else video_params())
    mapping = ortc.get_producer_rtp_parameters_mapping(params, ROUTER_RTP_CAPABILITIES)
    consumable = ortc.get_consumable_rtp_parameters(kind, params, ROUTER_RTP_CAPABILITIES, mapping)
    return params, mapping, consumable


def consumer_rtp_parameters(consumable: RtpParameters, mid: str) -> RtpParameters:
    """A consumer's parameters as the worker gets them (ORTC against consumer_caps())."""
    params = ortc.get_consumer_rtp_parameters(
        consumable, ortc.validate_rtp_capabilities(consumer_caps())
    )
    params.mid = mid
    return params


def make_pair(kind: str) -> tuple[Producer, Consumer, RecordingTransport, RecordingTransport]:
    params, mapping, consumable = resolve(kind)
    producer_transport, consumer_transport = RecordingTransport(), RecordingTransport()
    producer = Producer(
        producer_id="p",
        kind=kind,
        rtp_parameters=params,
        rtp_mapping=mapping,
        transport=producer_transport,  # type: ignore[arg-type]
        paused=False,
        app_data={},
    )
    consumer_params = consumer_rtp_parameters(consumable, "0")
    consumer = Consumer(
        consumer_id="c",
        producer=producer,
        rtp_parameters=consumer_params,
        transport=consumer_transport,  # type: ignore[arg-type]
        paused=False,
        app_data={},
    )
    producer.add_consumer(consumer)
    return producer, consumer, producer_transport, consumer_transport


def rtp(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    extensions: Sequence[tuple[int, bytes]] = (),
    marker: bool = False,
) -> bytes:
    block = build_extension_block(list(extensions))
    b0 = 0x80 | (0x10 if block else 0)
    return struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc) + block + payload


def fields(packet: bytes) -> tuple[int, int, int, int]:
    _, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
    return b1 & 0x7F, seq, ts, ssrc


VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + b"k" * 50  # S=1, PID=0, P bit 0
VP8_DELTA = bytes([0x10, 0x01]) + b"d" * 50  # P bit 1: inter frame


async def test_audio_rewrites_ssrc_pt_seq_ts_and_maps_extensions() -> None:
    producer, consumer, _, out = make_pair("audio")
    router_pt = consumer.payload_type
    level = router_ext_id(URI_AUDIO_LEVEL, "audio")
    packet = rtp(96, 100, 5000, 1111, b"opus!", [(1, b"0"), (2, bytes([0x80 | 30]))], marker=True)
    producer.receive_rtp(packet, 1.0)
    assert len(out.rtp) == 1
    sent = out.rtp[0]
    assert fields(sent) == (router_pt, 100, 5000, consumer.ssrc)
    assert sent[1] & 0x80, "marker bit kept"
    assert sent.endswith(b"opus!")
    # mid (client id 1) is not forwarded; audio-level moves from id 2 to the router's id.
    assert sent[12:14] == b"\xbe\xde"
    element = sent[16]
    assert element >> 4 == level
    assert sent[17] == 0x80 | 30
    assert consumer.payload_type != 96 or router_pt == 96


async def test_sequence_numbers_wrap_around() -> None:
    producer, _consumer, _, out = make_pair("audio")
    seqs = [65533, 65534, 65535, 0, 1, 2]
    for i, seq in enumerate(seqs):
        producer.receive_rtp(rtp(96, seq, 960 * i, 1111, b"x"), 1.0 + i * 0.02)
    out_seqs = [fields(p)[1] for p in out.rtp]
    assert out_seqs == seqs
    assert producer.streams[1111].cycles == 65536
    assert producer.streams[1111].report_block(2.0).packets_lost == 0


async def test_a_call_longer_than_half_the_sequence_space_keeps_its_media() -> None:
    """Over 65536 packets (about 22 minutes of 20 ms audio; 5 of video) every
    packet gets through, with the consumer's numbering unbroken: a fixed sync
    point once made the second half of every wrap look older than it."""
    producer, consumer, _, out = make_pair("audio")
    count = 0x10000 + 500
    for i in range(count):
        producer.receive_rtp(rtp(96, (30000 + i) & 0xFFFF, 960 * i, 1111, b"a"), 1.0 + i * 0.02)
    assert consumer.packets_sent == count
    out_seqs = [fields(p)[1] for p in out.rtp]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(out_seqs))


async def test_continuity_across_pause_and_resume() -> None:
    producer, consumer, _, out = make_pair("audio")
    for i in range(5):
        producer.receive_rtp(rtp(96, 1000 + i, 48000 + 960 * i, 1111, b"a"), 10.0 + i * 0.02)
    last_seq, last_ts = fields(out.rtp[-1])[1:3]
    await consumer.pause()
    for i in range(5, 55):  # one second of audio the consumer does not get
        producer.receive_rtp(rtp(96, 1000 + i, 48000 + 960 * i, 1111, b"a"), 10.0 + i * 0.02)
    assert len(out.rtp) == 5
    await consumer.resume()
    # The publisher also jumped: a new sequence base after a restart on its side.
    producer.receive_rtp(rtp(96, 1055, 48000 + 960 * 55, 1111, b"a"), 11.1)
    seq, ts = fields(out.rtp[-1])[1:3]
    assert seq == (last_seq + 1) & 0xFFFF, "no gap in sequence numbers after resume"
    # the timestamp advanced by the wall-clock time the consumer was paused (~1.02 s)
    assert abs(((ts - last_ts) & 0xFFFFFFFF) - int(1.02 * 48000)) < 48000 * 0.05


async def test_video_waits_for_keyframe_and_requests_one() -> None:
    producer, _consumer, producer_transport, out = make_pair("video")
    assert producer_transport.rtcp, "a new video consumer asks for a keyframe"
    requests = [p for pkt in producer_transport.rtcp for p in rtcp.parse_compound(pkt)]
    assert any(isinstance(p, rtcp.Pli) and p.media_ssrc == 2222 for p in requests)
    producer.receive_rtp(rtp(97, 10, 900, 2222, VP8_DELTA), 1.0)
    producer.receive_rtp(rtp(97, 11, 900, 2222, VP8_DELTA), 1.01)
    assert out.rtp == [], "nothing before the keyframe"
    producer.receive_rtp(rtp(97, 12, 3900, 2222, VP8_KEY), 1.05)
    producer.receive_rtp(rtp(97, 13, 3900, 2222, VP8_DELTA), 1.06)
    assert [fields(p)[1] for p in out.rtp] == [12, 13]


async def test_video_starts_over_from_a_keyframe_when_its_transport_connects() -> None:
    # A consumer resumed before its transport's DTLS finished starts on a
    # keyframe that goes nowhere; what follows would be deltas the subscriber
    # cannot decode.
    producer, consumer, producer_transport, out = make_pair("video")
    producer.receive_rtp(rtp(97, 10, 900, 2222, VP8_KEY), 1.0)
    producer.receive_rtp(rtp(97, 11, 3900, 2222, VP8_DELTA), 1.03)
    assert len(out.rtp) == 2  # sent before the transport could deliver them
    out.rtp.clear()
    producer_transport.rtcp.clear()
    producer._last_keyframe_request.clear()  # outside the merge window

    consumer.on_transport_connected()
    requests = [p for pkt in producer_transport.rtcp for p in rtcp.parse_compound(pkt)]
    assert any(isinstance(p, rtcp.Pli) for p in requests), "a keyframe is asked for"
    producer.receive_rtp(rtp(97, 12, 6900, 2222, VP8_DELTA), 1.06)
    assert out.rtp == [], "no delta before the next keyframe"
    producer.receive_rtp(rtp(97, 13, 9900, 2222, VP8_KEY), 1.1)
    # Numbered as a new consumer's would be: the subscriber saw nothing before.
    assert [fields(p)[1:3] for p in out.rtp] == [(13, 9900)], "the keyframe first"


async def test_nack_is_answered_with_rtx_carrying_the_original_seq() -> None:
    producer, consumer, _, out = make_pair("video")
    for i in range(5):
        producer.receive_rtp(
            rtp(97, 500 + i, 9000, 2222, VP8_KEY if i == 0 else VP8_DELTA), 1.0 + i / 100
        )
    original = out.rtp[2]
    consumer.receive_nack((fields(original)[1],), now=1.05)
    rtx = out.rtp[-1]
    assert consumer.rtx_ssrc is not None
    pt, _rtx_seq, ts, ssrc = fields(rtx)
    assert ssrc == consumer.rtx_ssrc
    assert pt == consumer.rtx_payload_type
    assert ts == fields(original)[2]
    header_len = len(rtx) - len(VP8_DELTA) - 2
    assert struct.unpack_from("!H", rtx, header_len)[0] == fields(original)[1], "OSN"
    assert rtx.endswith(VP8_DELTA)
    assert consumer.packets_retransmitted == 1
    # The RTX packet carries the consumer's MID, which aiortc routes RTX by.
    _csrc_end, ext_start, ext_end, _ = header_bounds(rtx)
    mid_id = router_ext_id(URI_MID, "video")
    assert [
        (i, rtx[s:e])
        for i, s, e in iter_one_byte_extensions(rtx, ext_start, ext_end)
        if i == mid_id
    ] == [(mid_id, b"0")]


async def test_publisher_rtx_is_unwrapped_only_when_missing_and_padding_dropped() -> None:
    producer, consumer, producer_transport, out = make_pair("video")
    producer.receive_rtp(rtp(97, 100, 9000, 2222, VP8_KEY), 1.0)
    producer.receive_rtp(rtp(97, 102, 9000, 2222, VP8_DELTA), 1.01)  # 101 lost
    nacks = [
        p
        for pkt in producer_transport.rtcp
        for p in rtcp.parse_compound(pkt)
        if isinstance(p, rtcp.Nack)
    ]
    assert nacks, "the gap is NACKed upstream"
    assert 101 in nacks[-1].lost, "the gap is NACKed upstream"
    # Chrome repairs 101 on its RTX SSRC: OSN + payload
    producer.receive_rtp(rtp(98, 7, 9000, 3333, struct.pack("!H", 101) + VP8_DELTA), 1.05)
    # ...and sends a bandwidth probe with no payload, and a duplicate repair
    producer.receive_rtp(rtp(98, 8, 9000, 3333, b""), 1.06)
    producer.receive_rtp(rtp(98, 9, 9000, 3333, struct.pack("!H", 101) + VP8_DELTA), 1.07)
    assert [fields(p)[1] for p in out.rtp] == [100, 102, 101]
    assert all(fields(p)[3] == consumer.ssrc for p in out.rtp), "nothing leaks onto other SSRCs"
    assert producer_transport.drops.get("rtx-padding") == 1
    assert producer_transport.drops.get("duplicate") == 1


async def test_sender_report_maps_publisher_media_time() -> None:
    producer, consumer, _, _out = make_pair("audio")
    producer.receive_rtp(rtp(96, 1, 100_000, 1111, b"a"), 1.0)
    ntp = rtcp.ntp_now()
    producer.receive_sender_report(rtcp.SenderReport(1111, ntp, 100_000, 1, 1, ()), 1.0)
    report = rtcp.parse_compound(consumer.sender_report() or b"")[0]
    assert isinstance(report, rtcp.SenderReport)
    assert report.ssrc == consumer.ssrc
    elapsed = rtcp.ntp_to_seconds(report.ntp) - rtcp.ntp_to_seconds(ntp)
    expected = 100_000 + elapsed * 48000
    assert abs(report.rtp_timestamp - expected) < 48  # within 1 ms


@pytest.mark.parametrize("kind", ["audio", "video"])
async def test_periodic_rtcp_audio_every_five_seconds_video_every_tick(kind: str) -> None:
    """mediasoup's intervals: an audio stream's SR and RR go out at most every ~5 s."""
    producer, consumer, _, _ = make_pair(kind)
    pt, ssrc, payload = (96, 1111, b"a") if kind == "audio" else (97, 2222, VP8_KEY)
    producer.receive_rtp(rtp(pt, 1, 100_000, ssrc, payload), 1.0)
    ticks = [10.0, 11.0, 12.0, 14.0, 14.4, 15.0, 16.0, 19.0, 19.5, 20.5]
    reported = [t for t in ticks if consumer.periodic_sender_report(t, rtcp.ntp_now()) is not None]
    blocks = [t for t in ticks if producer.periodic_report_blocks(t)]
    if kind == "video":
        assert reported == blocks == ticks
    else:
        # 5 / 1.15 = 4.35 s after the last report, a tick reports again.
        assert reported == blocks == [10.0, 14.4, 19.0]


class TickTransport(Transport):
    """A real Transport's periodic RTCP, with the packets recorded instead of sent."""

    def __init__(self) -> None:
        super().__init__(router=SimpleNamespace(app_data={}), app_data={})  # type: ignore[arg-type]
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def _rtcp_ready(self) -> bool:
        return True


def tick_transport(consumers: int) -> tuple[TickTransport, list[Consumer]]:
    """A transport with the video producer of make_pair and ``consumers`` consumers of it."""
    producer, _, _, _ = make_pair("video")
    transport = TickTransport()
    transport.producers[producer.id] = producer
    made = []
    for index in range(consumers):
        params = consumer_rtp_parameters(resolve("video")[2], str(index))
        consumer = Consumer(
            consumer_id=f"c{index}",
            producer=producer,
            rtp_parameters=params,
            transport=transport,
            paused=False,
            app_data={},
        )
        producer.add_consumer(consumer)
        transport.consumers[consumer.id] = consumer
        made.append(consumer)
    producer.receive_rtp(rtp(97, 1, 9000, 2222, VP8_KEY), 1.0)
    assert len(transport.rtp) == consumers
    return transport, made


@pytest.mark.parametrize("consumers", [3, 40])
async def test_periodic_rtcp_compounds_the_sender_reports_of_a_tick(consumers: int) -> None:
    """mediasoup's compound: SRs, the RR, an SDES CNAME per SR, REMB; split under the size limit.

    aiortc (pymediasoup's RTCP stack) must parse every packet.
    """
    transport, made = tick_transport(consumers)
    transport._send_periodic_rtcp()
    assert transport.rtcp
    first = [type(p).__name__ for p in aiortc_rtp.RtcpPacket.parse(transport.rtcp[0])]
    if consumers <= 10:
        assert len(transport.rtcp) == 1, "one compound packet for the tick"
        sr, sdes = ["RtcpSrPacket"] * consumers, ["RtcpSdesPacket"] * consumers
        assert first == [*sr, "RtcpRrPacket", *sdes, "RtcpPsfbPacket"]  # the last is REMB
    assert "RtcpRrPacket" in first
    reported: list[int] = []
    receiver_reports = 0
    for packet in transport.rtcp:
        assert len(packet) <= RTCP_MAX_COMPOUND
        parsed = aiortc_rtp.RtcpPacket.parse(packet)
        assert isinstance(parsed[0], aiortc_rtp.RtcpSrPacket)
        srs = [p.ssrc for p in parsed if isinstance(p, aiortc_rtp.RtcpSrPacket)]
        cnames = [
            c.ssrc for p in parsed if isinstance(p, aiortc_rtp.RtcpSdesPacket) for c in p.chunks
        ]
        assert cnames == srs, "each SR has its CNAME in the same compound packet"
        assert all(
            c.items == [(1, consumer.cname.encode())]
            for p in parsed
            if isinstance(p, aiortc_rtp.RtcpSdesPacket)
            for c in p.chunks
            for consumer in made
            if consumer.ssrc == c.ssrc
        )
        receiver_reports += sum(isinstance(p, aiortc_rtp.RtcpRrPacket) for p in parsed)
        reported += srs
        ours = rtcp.parse_compound(packet)
        assert [r.ssrc for r in ours if isinstance(r, rtcp.SenderReport)] == srs
    assert sorted(reported) == sorted(c.ssrc for c in made), "every consumer reported once"
    assert receiver_reports == 1, "the producer's RR goes out once, in the first packet"
    if consumers > 10:
        assert len(transport.rtcp) > 1


@pytest.mark.parametrize(
    "bad", [b"\x80", b"\x8f" + b"\x00" * 20, b"\x90\x60" + b"\x00" * 10 + b"\xbe\xde\xff\xff"]
)
async def test_malformed_packets_are_dropped_and_counted(bad: bytes) -> None:
    producer, _, producer_transport, out = make_pair("audio")
    producer.receive_rtp(bad, 1.0)
    assert out.rtp == []
    assert producer_transport.drops.get("malformed-rtp") == 1


async def test_publisher_restart_keeps_consumer_numbering_continuous() -> None:
    """A new source behind the same SSRC (replaceTrack, a restarted sender): the
    consumer's sequence numbers and timestamps go on without a jump."""
    producer, _consumer, _, out = make_pair("audio")
    for i in range(5):
        producer.receive_rtp(rtp(96, 100 + i, 1000 + 960 * i, 1111, b"a"), 1.0 + i * 0.02)
    last_seq, last_ts = fields(out.rtp[-1])[1:3]
    producer.receive_rtp(rtp(96, 40000, 777_777, 1111, b"b"), 1.12)
    producer.receive_rtp(rtp(96, 40001, 777_777 + 960, 1111, b"b"), 1.14)
    seqs = [fields(p)[1] for p in out.rtp[-2:]]
    assert seqs == [last_seq + 1, last_seq + 2]
    ts = fields(out.rtp[-2])[2]
    assert 0 < ((ts - last_ts) & 0xFFFFFFFF) < 48000 * 0.2
    assert fields(out.rtp[-1])[2] - ts == 960
