"""Simulcast producers and consumers on raw bytes (no sockets).

A producer with three encodings (rid-based as Chrome sends them, or
ssrc-based) feeds a SimulcastConsumer; what goes out is checked field by field:
the layer chosen, switches only at keyframes of the target layer, sequence
numbers without gaps and timestamps continuous across switches. Every test
runs with the C rewriter and with the Python one (the rewriter_kind fixture).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.channel.messages import Event
from sfu.control import ortc
from sfu.errors import InvalidRequestError
from sfu.media import rtcp
from sfu.media.pipe_consumer import PipeConsumer
from sfu.media.producer import LAYER_INACTIVE_AFTER, Producer
from sfu.media.simulcast_consumer import SimulcastConsumer, continued_timestamp
from sfu.media.vp8 import parse_vp8_descriptor, payload_start
from sfu.models import RtpParameters
from sfu.models.rtp_uris import URI_ABS_SEND_TIME, URI_MID, URI_RID, URI_RRID

from .test_rewriter import (
    ROUTER_RTP_CAPABILITIES,
    VP8_DELTA,
    VP8_KEY,
    RecordingTransport,
    consumer_rtp_parameters,
    fields,
    rewriter_kind,  # noqa: F401 - the fixture, used by name
    rtp,
)

# Every test here runs with the C rewriter and with the Python one.
pytestmark = pytest.mark.usefixtures("rewriter_kind")

MID_ID, ABS_ID, RID_ID, RRID_ID = 1, 3, 10, 11
RIDS = (b"r0", b"r1", b"r2")
SSRCS = (5000, 5001, 5002)
RTX_SSRCS = (6000, 6001, 6002)
# Each layer's RTP clock starts elsewhere, as a browser's do.
TS_BASE = (1_000, 500_000, 9_000_000)
CLOCK = 90000


def simulcast_params(rid_based: bool) -> dict[str, Any]:
    fb = [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]
    encodings: list[dict[str, Any]] = []
    for layer in range(3):
        encoding: dict[str, Any] = {"scalabilityMode": "L1T3", "active": True}
        if rid_based:
            encoding["rid"] = RIDS[layer].decode()
        else:
            encoding["ssrc"] = SSRCS[layer]
            encoding["rtx"] = {"ssrc": RTX_SSRCS[layer]}
        encodings.append(encoding)
    return {
        "mid": "0",
        "codecs": [
            {
                "mimeType": "video/VP8",
                "payloadType": 96,
                "clockRate": CLOCK,
                "parameters": {},
                "rtcpFeedback": fb,
            },
            {
                "mimeType": "video/rtx",
                "payloadType": 97,
                "clockRate": CLOCK,
                "parameters": {"apt": 96},
                "rtcpFeedback": [],
            },
        ],
        "headerExtensions": [
            {"uri": URI_MID, "id": MID_ID},
            {"uri": URI_ABS_SEND_TIME, "id": ABS_ID},
            {"uri": URI_RID, "id": RID_ID},
            {"uri": URI_RRID, "id": RRID_ID},
        ],
        "encodings": encodings,
        "rtcp": {"cname": "cname-s", "reducedSize": True},
    }


class Notified:
    def __init__(self) -> None:
        self.layers: list[Any] = []

    def __call__(self, event: str, data: Any) -> None:
        if event == Event.LAYERS_CHANGE:
            self.layers.append(None if data is None else data["spatialLayer"])


def video_producer(
    params: RtpParameters, transport: RecordingTransport
) -> tuple[Producer, RtpParameters]:
    """A producer of ``params`` (resolved by ORTC, as the control layer does) and
    its consumable parameters."""
    mapping = ortc.get_producer_rtp_parameters_mapping(params, ROUTER_RTP_CAPABILITIES)
    producer = Producer(
        producer_id="p",
        kind="video",
        rtp_parameters=params,
        rtp_mapping=mapping,
        transport=transport,  # type: ignore[arg-type]
        paused=False,
        app_data={},
    )
    consumable = ortc.get_consumable_rtp_parameters(
        "video", params, ROUTER_RTP_CAPABILITIES, mapping
    )
    return producer, consumable


def simulcast_consumer(
    producer: Producer, consumable: RtpParameters, transport: RecordingTransport
) -> tuple[SimulcastConsumer, Notified]:
    consumer = SimulcastConsumer(
        consumer_id="c",
        producer=producer,
        rtp_parameters=consumer_rtp_parameters(consumable, "0"),
        transport=transport,  # type: ignore[arg-type]
        paused=False,
        app_data={},
    )
    notified = Notified()
    consumer.notify = notified  # type: ignore[method-assign,assignment]  # records what the handle would get
    producer.add_consumer(consumer)
    return consumer, notified


def pipe_consumer(producer: Producer, transport: RecordingTransport) -> PipeConsumer:
    consumable = ortc.get_consumable_rtp_parameters(
        "video", producer.rtp_parameters, ROUTER_RTP_CAPABILITIES, producer.rtp_mapping
    )
    pipe = PipeConsumer(
        consumer_id="pipe",
        producer=producer,
        rtp_parameters=ortc.get_pipe_consumer_rtp_parameters(consumable, ROUTER_RTP_CAPABILITIES),
        transport=transport,  # type: ignore[arg-type]
        paused=False,
        app_data={},
    )
    producer.add_consumer(pipe)
    return pipe


def make_simulcast(
    rid_based: bool = True,
) -> tuple[Producer, SimulcastConsumer, RecordingTransport, RecordingTransport, Notified]:
    params = ortc.validate_rtp_parameters(simulcast_params(rid_based))
    producer_transport, consumer_transport = RecordingTransport(), RecordingTransport()
    producer, consumable = video_producer(params, producer_transport)
    if rid_based:
        for layer in range(3):
            assert producer.learn_ssrc(SSRCS[layer], 96, {MID_ID: b"0", RID_ID: RIDS[layer]})
    consumer, notified = simulcast_consumer(producer, consumable, consumer_transport)
    return producer, consumer, producer_transport, consumer_transport, notified


def plis(transport: RecordingTransport) -> list[int]:
    """The media SSRCs keyframes were asked for on, in order."""
    return [
        p.media_ssrc
        for packet in transport.rtcp
        for p in rtcp.parse_compound(packet)
        if isinstance(p, rtcp.Pli)
    ]


def send(producer: Producer, layer: int, seq: int, frame: int, key: bool, now: float) -> None:
    ts = (TS_BASE[layer] + frame * 3000) & 0xFFFFFFFF
    payload = VP8_KEY if key else VP8_DELTA
    producer.receive_rtp(rtp(96, seq, ts, SSRCS[layer], payload, [(MID_ID, b"0")]), now)


def give_sender_reports(producer: Producer, now: float) -> None:
    """Each layer's SR for the same wall-clock instant (frame 0)."""
    ntp = rtcp.ntp_now()
    for layer in range(3):
        producer.receive_sender_report(
            rtcp.SenderReport(
                ssrc=SSRCS[layer],
                ntp=ntp,
                rtp_timestamp=TS_BASE[layer],
                packet_count=0,
                octet_count=0,
                reports=(),
            ),
            now,
        )


async def test_consumer_parameters_say_simulcast_with_three_spatial_layers() -> None:
    producer, consumer, *_ = make_simulcast()
    assert producer.type == "simulcast"
    assert consumer.type == "simulcast"
    encoding = consumer.rtp_parameters.encodings[0]
    assert encoding.scalability_mode == "L3T3"
    assert (consumer.spatial_layer_count, consumer.temporal_layer_count) == (3, 3)


async def test_rid_layers_are_learned_and_rtx_by_repaired_rid() -> None:
    producer, *_ = make_simulcast()
    assert [s.ssrc if s else None for s in producer.layer_streams] == list(SSRCS)
    # RTX before... after its media: by the repaired RID.
    assert producer.learn_ssrc(RTX_SSRCS[1], 97, {MID_ID: b"0", RRID_ID: b"r1"})
    assert producer.rtx_ssrcs[RTX_SSRCS[1]] == SSRCS[1]
    # Unknown RID, a second SSRC for a known layer, a second RTX: refused.
    assert not producer.learn_ssrc(7777, 96, {MID_ID: b"0", RID_ID: b"zz"})
    assert not producer.learn_ssrc(7778, 96, {MID_ID: b"0", RID_ID: b"r0"})
    assert not producer.learn_ssrc(7779, 97, {MID_ID: b"0", RRID_ID: b"r1"})


async def test_climbs_to_the_highest_layer_at_its_keyframe_and_switches_down() -> None:
    producer, consumer, producer_transport, out, notified = make_simulcast()
    now = time.monotonic()
    seq = [100, 2000, 30000]
    for frame in range(3):  # every layer sends; keyframes on layers 0 and 1 only
        for layer in range(3):
            send(producer, layer, seq[layer], frame, key=frame == 0 and layer < 2, now=now)
            seq[layer] += 1
    assert producer.active_layers == (True, True, True)
    # Each layer became active in turn: the consumer took what there was.
    assert notified.layers == [0, 1]
    assert (consumer.current_spatial_layer, consumer.target_spatial_layer) == (1, 2)
    assert SSRCS[2] in plis(producer_transport), "the top layer's keyframe is asked for"
    sent_before = len(out.rtp)
    send(producer, 2, seq[2], 3, key=True, now=now + 0.1)
    send(producer, 1, seq[1], 3, key=False, now=now + 0.1)  # no longer sent
    send(producer, 2, seq[2] + 1, 4, key=False, now=now + 0.13)
    seq[1] += 1
    seq[2] += 2
    assert notified.layers == [0, 1, 2]
    assert len(out.rtp) == sent_before + 2
    out_seqs = [fields(p)[1] for p in out.rtp]
    assert out_seqs == list(range(out_seqs[0], out_seqs[0] + len(out_seqs))), "no gaps"

    producer_transport.rtcp.clear()
    producer._last_keyframe_request.clear()
    consumer.set_preferred_layers(0, 2)
    assert plis(producer_transport) == [SSRCS[0]], "the keyframe of layer 0 only"
    send(producer, 0, seq[0], 5, key=False, now=now + 0.16)  # not yet: a delta
    send(producer, 2, seq[2], 5, key=False, now=now + 0.16)  # still the top layer
    send(producer, 0, seq[0] + 1, 6, key=True, now=now + 0.2)  # switch here
    send(producer, 2, seq[2] + 1, 6, key=False, now=now + 0.2)  # no longer sent
    out_seqs = [fields(p)[1] for p in out.rtp]
    assert out_seqs == list(range(out_seqs[0], out_seqs[0] + len(out_seqs))), "no gaps"
    assert [fields(p)[3] for p in out.rtp] == [consumer.ssrc] * len(out_seqs)
    assert notified.layers == [0, 1, 2, 0]
    stats = consumer.get_stats()[0]
    assert (stats["spatialLayer"], stats["preferredSpatialLayer"]) == (0, 0)


async def test_timestamps_continue_on_the_capture_clock_across_a_switch() -> None:
    producer, consumer, _, out, _ = make_simulcast()
    now = time.monotonic()
    give_sender_reports(producer, now)
    for layer in range(3):
        send(producer, layer, 10 * layer, 0, key=True, now=now)
    send(producer, 2, 21, 1, key=False, now=now + 0.033)
    consumer.set_preferred_layers(1, 2)
    send(producer, 1, 11, 2, key=True, now=now + 0.066)
    out_ts = [fields(p)[2] for p in out.rtp]
    # Frame 0 of layers 0, 1, 2 (the climb as each became active: one tick apart,
    # never the same timestamp twice), frame 1 of layer 2, frame 2 of layer 1:
    # 3000 ticks a frame whatever the layer.
    assert [(t - out_ts[0]) & 0xFFFFFFFF for t in out_ts] == [0, 1, 2, 3002, 6002]


async def test_continued_timestamp_maps_through_both_reports() -> None:
    ntp = rtcp.ntp_now()
    assert continued_timestamp(500 + 900, (ntp, 500, 0.0), (ntp, 7000, 0.0), CLOCK) == 7900
    # Across the 32-bit wrap of the new layer's clock.
    assert continued_timestamp(100, (ntp, 0xFFFFFF00, 0.0), (ntp, 0, 0.0), CLOCK) == 356


async def test_an_inactive_top_layer_falls_back_and_comes_back() -> None:
    producer, consumer, producer_transport, out, notified = make_simulcast()
    now = time.monotonic()
    for layer in (2, 1, 0):  # the top layer first: the consumer starts there
        send(producer, layer, 10 * layer, 0, key=True, now=now)
    assert notified.layers == [2]
    # The top layer stops: a second later it is inactive.
    for stream in producer.layer_streams:
        assert stream is not None
        stream.last_packet_time = now - LAYER_INACTIVE_AFTER - 0.1
    producer.layer_streams[1].last_packet_time = now  # type: ignore[union-attr]
    producer.layer_streams[0].last_packet_time = now  # type: ignore[union-attr]
    producer_transport.rtcp.clear()
    producer._last_keyframe_request.clear()
    producer._check_layers()
    assert producer.active_layers == (True, True, False)
    assert consumer.target_spatial_layer == 1
    assert plis(producer_transport) == [SSRCS[1]]
    send(producer, 1, 11, 1, key=True, now=now + 1.2)
    assert notified.layers == [2, 1]
    # It comes back: the first packet makes it active, the consumer goes up at its keyframe.
    send(producer, 2, 21, 2, key=False, now=now + 1.3)
    assert producer.active_layers == (True, True, True)
    assert consumer.target_spatial_layer == 2
    send(producer, 2, 22, 3, key=True, now=now + 1.4)
    assert notified.layers == [2, 1, 2]
    out_seqs = [fields(p)[1] for p in out.rtp]
    assert out_seqs == list(range(out_seqs[0], out_seqs[0] + len(out_seqs)))


async def test_ssrc_based_simulcast_and_per_layer_stats() -> None:
    producer, _consumer, _, out, notified = make_simulcast(rid_based=False)
    now = time.monotonic()
    for layer in (2, 1, 0):  # the top layer first: the consumer starts there
        send(producer, layer, 10 * layer, 0, key=True, now=now)
    assert notified.layers == [2]
    assert len(out.rtp) == 1
    stats = producer.get_stats()
    assert [(s["ssrc"], s["spatialLayer"], s["active"]) for s in stats] == [
        (SSRCS[0], 0, True),
        (SSRCS[1], 1, True),
        (SSRCS[2], 2, True),
    ]


async def test_pausing_tells_no_layer_and_resuming_waits_for_a_keyframe() -> None:
    producer, consumer, _, out, notified = make_simulcast()
    now = time.monotonic()
    for layer in (2, 1, 0):
        send(producer, layer, 10 * layer, 0, key=True, now=now)
    await consumer.pause()
    assert notified.layers == [2, None]
    await consumer.resume()
    send(producer, 2, 21, 1, key=False, now=now + 0.03)
    assert len(out.rtp) == 1, "a delta after resume is not sent"
    send(producer, 2, 22, 2, key=True, now=now + 0.06)
    assert notified.layers == [2, None, 2]
    assert [fields(p)[1] for p in out.rtp] == [20, 21]


# ---- the property: any interleaving gives one continuous stream ---------------------


@st.composite
def simulcast_runs(draw: st.DrawFn) -> list[tuple[str, int, int, bool]]:
    """Events: ("pkt", layer, frame, keyframe), ("lose", layer, frame, _) and
    ("prefer", layer, _, _), frames in time order, layers interleaved."""
    events: list[tuple[str, int, int, bool]] = []
    for frame in range(draw(st.integers(5, 40))):
        order = draw(st.permutations([0, 1, 2]))
        for layer in order:
            if draw(st.integers(0, 9)) == 0:
                continue  # this layer lost this frame
            key = frame == 0 or draw(st.integers(0, 5)) == 0
            events.append(("pkt", layer, frame, key))
        if draw(st.integers(0, 4)) == 0:
            events.append(("prefer", draw(st.integers(0, 2)), 0, False))
    # Reordering: a few adjacent swaps.
    for _ in range(draw(st.integers(0, 3))):
        if len(events) > 1:
            i = draw(st.integers(0, len(events) - 2))
            events[i], events[i + 1] = events[i + 1], events[i]
    return events


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(run=simulcast_runs())
async def test_any_interleaving_gives_continuous_monotonic_output(
    run: list[tuple[str, int, int, bool]],
) -> None:
    producer, consumer, _, out, _ = make_simulcast()
    now = time.monotonic()
    give_sender_reports(producer, now)
    # Sequence numbers: frame f of layer l is seq base_l + f (so a lost frame is a gap upstream).
    seq_base = (65530, 100, 40000)
    sent_frames: list[tuple[int, int]] = []  # (layer, frame) of each packet out, in order
    for kind, layer, frame, key in run:
        if kind == "prefer":
            consumer.set_preferred_layers(layer, 2)
            continue
        before = len(out.rtp)
        ts = (TS_BASE[layer] + frame * 3000) & 0xFFFFFFFF
        seq = (seq_base[layer] + frame) & 0xFFFF
        payload = VP8_KEY if key else VP8_DELTA
        producer.receive_rtp(
            rtp(96, seq, ts, SSRCS[layer], payload, [(MID_ID, b"0")]), now + frame * 0.033
        )
        if len(out.rtp) > before:
            sent_frames.append((layer, frame))
    packets = [fields(p) for p in out.rtp]
    assert len({p[1] for p in packets}) == len(packets), "no out seq twice"
    # Within a run of one layer, out seq and ts follow the input's; at a switch
    # the next out seq is the highest so far + 1 and the new layer starts at a keyframe.
    keyframes = {(layer, frame) for kind, layer, frame, key in run if kind == "pkt" and key}
    highest = None  # (out seq, out ts, frame) of the highest out seq so far
    for i, ((layer, frame), (_, out_seq, out_ts, _)) in enumerate(
        zip(sent_frames, packets, strict=True)
    ):
        if i == 0 or sent_frames[i - 1][0] != layer:
            assert (layer, frame) in keyframes, "a layer starts at its keyframe"
            if highest is not None:
                top_seq, top_ts, top_frame = highest
                assert out_seq == (top_seq + 1) & 0xFFFF, "no gap at a switch"
                advance = (out_ts - top_ts) & 0xFFFFFFFF
                if frame > top_frame:  # on the capture clock, through the SRs
                    assert advance == (frame - top_frame) * 3000
                else:  # a keyframe older than what was sent: still forward
                    assert 0 < advance < 0x80000000
        else:
            prev_frame = sent_frames[i - 1][1]
            _, prev_seq, prev_ts, _ = packets[i - 1]
            assert (out_seq - prev_seq) & 0xFFFF == (frame - prev_frame) & 0xFFFF
            assert (out_ts - prev_ts) & 0xFFFFFFFF == ((frame - prev_frame) * 3000) & 0xFFFFFFFF
        if highest is None or 0 < (out_seq - highest[0]) & 0xFFFF < 0x8000:
            highest = (out_seq, out_ts, frame)


# ---- pipes: every layer to the other worker ------------------------------------------


async def test_a_pipe_carries_every_layer_and_the_far_consumer_switches() -> None:
    producer, _, _, _, _ = make_simulcast()
    pipe_out = RecordingTransport()
    pipe = pipe_consumer(producer, pipe_out)
    pipe_params = pipe.rtp_parameters
    assert len(pipe_params.encodings) == 3
    layer_ssrcs = [stream.ssrc for stream in pipe.sending_streams()]
    assert layer_ssrcs == [e.ssrc for e in pipe_params.encodings]

    # The far end: the pipe producer with the pipe consumer's parameters.
    far_transport, far_out = RecordingTransport(), RecordingTransport()
    far, far_consumable = video_producer(pipe_params, far_transport)
    assert far.type == "simulcast"
    far_consumer, notified = simulcast_consumer(far, far_consumable, far_out)

    now = time.monotonic()
    frame = 0
    for key in (True, False, False):
        for layer in (2, 1, 0):
            send(producer, layer, 100 * layer + frame, frame, key=key, now=now + frame * 0.033)
        frame += 1
    by_ssrc: dict[int, int] = {}
    for packet in pipe_out.rtp:
        by_ssrc[fields(packet)[3]] = by_ssrc.get(fields(packet)[3], 0) + 1
    assert by_ssrc == dict.fromkeys(layer_ssrcs, 3), "each layer on its own SSRC"

    # Through the pipe, the far consumer starts on the top layer and switches down.
    for packet in pipe_out.rtp:
        far.receive_rtp(packet, now + 0.1)
    assert notified.layers == [2]
    far_consumer.set_preferred_layers(0, 2)
    far_transport.rtcp.clear()
    pipe_out.rtp.clear()
    send(producer, 0, frame, frame, key=True, now=now + 0.2)
    for packet in pipe_out.rtp:
        far.receive_rtp(packet, now + 0.2)
    assert notified.layers == [2, 0]
    out_seqs = [fields(p)[1] for p in far_out.rtp]
    assert out_seqs == list(range(out_seqs[0], out_seqs[0] + len(out_seqs)))


async def test_a_keyframe_request_through_the_pipe_reaches_its_layer() -> None:
    producer, _, producer_transport, _, _ = make_simulcast()
    pipe = pipe_consumer(producer, RecordingTransport())
    producer_transport.rtcp.clear()
    producer._last_keyframe_request.clear()
    pipe.layers[1].receive_key_frame_request()
    assert plis(producer_transport) == [SSRCS[1]]


# ---- VP8 temporal layers ---------------------------------------------------------------

# L1T3's frame pattern: temporal layer ids 0, 2, 1, 2, 0, 2, 1, 2...
T3_PATTERN = (0, 2, 1, 2)


def vp8_t3(picture_id: int, tl0: int, tid: int, key: bool, packet_in_frame: int = 0) -> bytes:
    """A VP8 payload with picture id (15 bits), TL0PICIDX and TID."""
    start = 0x10 if packet_in_frame == 0 else 0x00
    descriptor = bytes(
        [0x80 | start, 0xE0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0, (tid << 6) | 0x20]
    )
    header = bytes([0x00, 0x9D, 0x01, 0x2A]) if key else bytes([0x01])
    return descriptor + (header if packet_in_frame == 0 else b"") + b"v" * 40


def descriptor_of(packet: bytes) -> tuple[int, int, int]:
    """(picture id, TL0PICIDX, TID) of a sent packet (no CSRC, no extension block)."""
    d = parse_vp8_descriptor(packet, 12 + payload_start(packet[0], packet[12:]))
    assert d is not None
    return d.picture_id, d.tl0, d.tid


def send_t3_frames(
    producer: Producer, layer: int, first_frame: int, frames: int, now: float, key_first: bool
) -> None:
    """``frames`` frames of two packets each on ``layer``; seq, picture id and TL0PICIDX follow
    the frame number (each layer with its own picture id base)."""
    for frame in range(first_frame, first_frame + frames):
        tid = T3_PATTERN[frame % 4]
        tl0 = (frame + 3) // 4 + 50 * layer
        picture_id = (1000 * layer + frame) & 0x7FFF
        key = key_first and frame == first_frame
        ts = (TS_BASE[layer] + frame * 3000) & 0xFFFFFFFF
        for part in range(2):
            seq = (100 * layer + 2 * frame + part) & 0xFFFF
            payload = vp8_t3(picture_id, tl0, tid, key, part)
            producer.receive_rtp(rtp(96, seq, ts, SSRCS[layer], payload), now + frame * 0.033)


async def test_temporal_layers_above_the_preferred_one_are_dropped_without_holes() -> None:
    producer, consumer, _, out, notified = make_simulcast()
    now = time.monotonic()
    send_t3_frames(producer, 2, 0, 1, now, key_first=True)  # the top layer starts
    consumer.set_preferred_layers(2, 0)
    send_t3_frames(producer, 2, 1, 8, now, key_first=False)
    sent = [descriptor_of(p) for p in out.rtp]
    assert {tid for _, _, tid in sent} == {0}, "only temporal layer 0"
    seqs = [fields(p)[1] for p in out.rtp]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no hole for dropped packets"
    picture_ids = sorted({pid for pid, _, _ in sent})
    assert picture_ids == list(range(picture_ids[0], picture_ids[0] + len(picture_ids)))
    assert notified.layers[-1] == 2
    assert consumer.get_stats()[0]["temporalLayer"] == 0

    # Up to temporal layer 2 again: every frame from the next one.
    consumer.set_preferred_layers(2, 2)
    out.rtp.clear()
    send_t3_frames(producer, 2, 9, 4, now, key_first=False)
    assert sorted({tid for _, _, tid in map(descriptor_of, out.rtp)}) == [0, 1, 2]
    assert consumer.get_stats()[0]["temporalLayer"] == 2


async def test_picture_id_and_tl0picidx_continue_across_a_spatial_switch() -> None:
    producer, consumer, _, out, _ = make_simulcast()
    now = time.monotonic()
    send_t3_frames(producer, 2, 0, 5, now, key_first=True)
    last_pid, last_tl0, _ = descriptor_of(out.rtp[-1])
    consumer.set_preferred_layers(0, 2)
    send_t3_frames(producer, 0, 5, 3, now, key_first=True)
    after = [descriptor_of(p) for p in out.rtp[10:]]
    assert after[0][:2] == ((last_pid + 1) & 0x7FFF, (last_tl0 + 1) & 0xFF)
    assert [pid for pid, _, _ in after[::2]] == [last_pid + 1, last_pid + 2, last_pid + 3]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    frames=st.integers(4, 40),
    keyframes=st.sets(st.tuples(st.integers(0, 2), st.integers(1, 10))),  # (layer, frame / 4)
    preferences=st.dictionaries(
        st.integers(1, 40), st.tuples(st.integers(0, 2), st.integers(0, 2))
    ),
)
async def test_any_layer_choice_gives_continuous_vp8_numbering(
    frames: int,
    keyframes: set[tuple[int, int]],
    preferences: dict[int, tuple[int, int]],
) -> None:
    """One packet a frame on every layer, keyframes and preferred (spatial,
    temporal) layers changing at random: out seq +1 a packet, picture id +1 a
    frame, TL0PICIDX +0 or +1, never a temporal layer above the preferred one."""
    producer, consumer, _, out, _ = make_simulcast()
    now = time.monotonic()
    temporal = 2
    for frame in range(frames):
        if frame in preferences:
            spatial, temporal = preferences[frame]
            consumer.set_preferred_layers(spatial, temporal)
        for layer in (2, 1, 0):
            before = len(out.rtp)
            tid = T3_PATTERN[frame % 4]
            # Keyframes are temporal layer 0 frames, as an encoder makes them.
            key = frame == 0 or (frame % 4 == 0 and (layer, frame // 4) in keyframes)
            payload = vp8_t3(
                (1000 * layer + frame) & 0x7FFF, (frame + 3) // 4 + 50 * layer, tid, key
            )
            ts = (TS_BASE[layer] + frame * 3000) & 0xFFFFFFFF
            seq = (100 * layer + frame) & 0xFFFF
            producer.receive_rtp(rtp(96, seq, ts, SSRCS[layer], payload), now + frame * 0.033)
            if len(out.rtp) > before:
                assert tid <= temporal, "a temporal layer above the preferred one"
    sent = [(fields(p)[1], *descriptor_of(p)) for p in out.rtp]
    for (seq_a, pid_a, tl0_a, _), (seq_b, pid_b, tl0_b, _) in itertools.pairwise(sent):
        assert seq_b == (seq_a + 1) & 0xFFFF
        assert pid_b == (pid_a + 1) & 0x7FFF
        assert (tl0_b - tl0_a) & 0xFF in (0, 1)


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encodings", "message"),
    [
        ([{"rid": r} for r in ("a", "b", "c", "d")], "at most 3"),
        ([{"rid": "a"}, {"rid": "a"}], "distinct rid"),
        ([{"rid": "a"}, {"ssrc": 5}], "distinct rid"),
        ([{"ssrc": 5}, {"ssrc": 5}], "distinct rid or a distinct ssrc"),
    ],
)
async def test_encodings_that_are_not_layers_are_refused(
    encodings: list[dict[str, Any]], message: str
) -> None:
    params = simulcast_params(rid_based=True)
    params["encodings"] = encodings
    with pytest.raises(InvalidRequestError, match=message):
        ortc.get_producer_rtp_parameters_mapping(
            ortc.validate_rtp_parameters(params), ROUTER_RTP_CAPABILITIES
        )


async def test_a_truncated_vp8_descriptor_is_forwarded_untouched() -> None:
    assert parse_vp8_descriptor(bytes([0x90, 0xE0, 0x80]), 0) is None
    producer, _, _, out, _ = make_simulcast()
    send(producer, 2, 10, 0, key=True, now=time.monotonic())
    bad = bytes([0x90, 0xE0, 0x80])
    producer.receive_rtp(rtp(96, 11, TS_BASE[2] + 3000, SSRCS[2], bad), time.monotonic())
    assert out.rtp[-1].endswith(bad)
