"""Loss repair's rules (sfu/media/loss_repair.py), on a real Producer and Consumer.

Downstream: which NACKed packets a consumer resends (once per RTT, a few times
in all, nothing too old, nothing it never sent, within a budget). Upstream:
one window decides "repair or resynchronise", so that every packet the server
asks a publisher for is forwarded when it comes, or its gap is closed with a
keyframe request.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.media import rtcp
from sfu.media.loss_repair import (
    DEFAULT_RTT,
    MAX_RETRANSMISSION_AGE_VIDEO,
    MAX_RETRANSMISSIONS,
    REPAIR_WINDOW,
    RETRANSMISSION_BUDGET_MIN_BYTES,
    RETRANSMISSION_BUDGET_SHARE,
)
from sfu.media.rtp import header_bounds
from sfu.media.rtp_rewriter import MAX_LATE_PACKETS
from sfu.media.rtp_stream import GAP_TOO_WIDE, TOO_LATE, RtpStreamRecv

from .test_rewriter import VP8_DELTA, VP8_KEY, fields, make_pair, rewriter_kind, rtp

__all__ = ["rewriter_kind"]  # the fixture: every test here runs with the C and Python rewriters

VIDEO_SSRC = 2222
FRAME = 3000  # 90 kHz ticks between packets: 30 packets/s


def send_stream(
    producer: Any, first: int, count: int, t0: float, keyframe_first: bool, padding: int = 0
) -> float:
    """``count`` packets from seq ``first``, one every 1/30 s; returns the next time."""
    now = t0
    for i in range(count):
        seq = (first + i) & 0xFFFF
        payload = (VP8_KEY if keyframe_first and i == 0 else VP8_DELTA) + b"p" * padding
        producer.receive_rtp(rtp(97, seq, seq * FRAME, VIDEO_SSRC, payload), now)
        now += 1 / 30
    return now


def rtx_sent(out: Any, consumer: Any) -> list[int]:
    """Original out seqs of the RTX packets the consumer sent."""
    originals = []
    for packet in out.rtp:
        if fields(packet)[3] == consumer.rtx_ssrc:
            payload_start = header_bounds(packet)[2]
            originals.append(struct.unpack_from("!H", packet, payload_start)[0])
    return originals


def test_the_late_rule_and_the_nack_window_are_one_number() -> None:
    """The C rewriter's own #define must drop exactly what lies past REPAIR_WINDOW."""
    assert MAX_LATE_PACKETS == REPAIR_WINDOW
    native = pytest.importorskip("sfu.media._native")
    rewriter = native.RtpRewriter(1)
    rewriter.active = True
    rewriter.needs_sync = False
    rewriter.sync_seq = 1000
    rewriter.max_out_seq = 999
    newest = 1000 + REPAIR_WINDOW + 6
    for seq in range(1000, newest + 1, 2):  # every other packet: the rest come late
        rewriter.send(0x80, 96, b"x", seq, seq, 0.0)
    rewriter.send(0x80, 96, b"x", newest - REPAIR_WINDOW - 1, 0, 0.0)  # one past the window
    assert rewriter.packets_dropped_late == 1
    rewriter.send(0x80, 96, b"x", newest - REPAIR_WINDOW + 1, 0, 0.0)  # inside it
    assert rewriter.packets_dropped_late == 1


async def test_the_same_nack_within_one_rtt_is_answered_once_then_once_per_rtt() -> None:
    producer, consumer, _, out = make_pair("video")
    now = send_stream(producer, 100, 20, 10.0, keyframe_first=True)
    consumer.rtt = 0.05
    seq = fields(out.rtp[10])[1]
    for i in range(10):  # ten NACKs within one RTT
        consumer.receive_nack((seq,), now=now + i * 0.004)
    assert rtx_sent(out, consumer) == [seq]
    consumer.receive_nack((seq,), now=now + 0.051)  # one RTT on: one more
    assert rtx_sent(out, consumer) == [seq, seq]
    for i in range(2, 20):  # one NACK per RTT, long after: never past the cap
        consumer.receive_nack((seq,), now=now + i * 0.051)
    assert rtx_sent(out, consumer) == [seq] * MAX_RETRANSMISSIONS
    suppressed = consumer.retransmissions_suppressed
    assert suppressed["recent"] == 9
    assert suppressed["limit"] == 20 - 2 - (MAX_RETRANSMISSIONS - 2)
    stats = consumer.get_stats()[0]
    assert stats["packetsRetransmitted"] == MAX_RETRANSMISSIONS
    assert stats["retransmissionsSuppressed"] == suppressed


async def test_without_an_rtt_the_default_one_spaces_the_resends() -> None:
    producer, consumer, _, out = make_pair("video")
    now = send_stream(producer, 100, 20, 10.0, keyframe_first=True)
    assert consumer.rtt == 0.0
    seq = fields(out.rtp[5])[1]
    consumer.receive_nack((seq,), now=now)
    consumer.receive_nack((seq,), now=now + DEFAULT_RTT * 0.9)
    assert len(rtx_sent(out, consumer)) == 1
    consumer.receive_nack((seq,), now=now + DEFAULT_RTT * 1.1)
    assert len(rtx_sent(out, consumer)) == 2


async def test_packets_older_than_the_receiver_can_use_are_not_resent() -> None:
    producer, consumer, _, out = make_pair("video")
    # 3 s of video (90 packets): the first ones are older than the limit.
    now = send_stream(producer, 100, 90, 10.0, keyframe_first=True)
    old, recent = fields(out.rtp[0])[1], fields(out.rtp[-5])[1]
    consumer.receive_nack((old, recent), now=now)
    assert rtx_sent(out, consumer) == [recent]
    assert consumer.retransmissions_suppressed["tooOld"] == 1
    # After an outage of the subscriber, nothing it NACKs from before is resent.
    later = now + MAX_RETRANSMISSION_AGE_VIDEO + 0.1
    consumer.receive_nack((recent,), now=later)
    assert rtx_sent(out, consumer) == [recent]
    assert consumer.retransmissions_suppressed["tooOld"] == 2


async def test_only_packets_this_consumer_sent_are_resent() -> None:
    producer, consumer, _, out = make_pair("video")
    now = send_stream(producer, 100, 10, 10.0, keyframe_first=True)
    newest = fields(out.rtp[-1])[1]
    consumer.receive_nack(((newest + 1) & 0xFFFF, (newest + 500) & 0xFFFF), now=now)
    assert rtx_sent(out, consumer) == []
    assert consumer.retransmissions_suppressed["notSent"] == 2


async def test_retransmissions_stay_within_their_share_of_the_media() -> None:
    producer, consumer, _, out = make_pair("video")
    now = 10.0
    # 1000-byte packets, and a subscriber that loses half of them and NACKs
    # those, every 10 packets, for 60 s.
    for burst in range(180):
        first = (100 + burst * 10) & 0xFFFF
        now = send_stream(producer, first, 10, now, keyframe_first=burst == 0, padding=950)
        recent = [fields(p)[1] for p in out.rtp[-10:] if fields(p)[3] == consumer.ssrc]
        consumer.receive_nack(tuple(recent[::2]), now=now)
    media_bytes = consumer.bytes_sent
    # What the budget counts: the size of the packets resent (RTX adds its OSN and MID).
    size = {fields(p)[1]: len(p) for p in out.rtp if fields(p)[3] == consumer.ssrc}
    rtx_bytes = sum(size[seq] for seq in rtx_sent(out, consumer))
    assert consumer.retransmissions_suppressed["budget"] > 0
    assert rtx_bytes <= RETRANSMISSION_BUDGET_SHARE * media_bytes + RETRANSMISSION_BUDGET_MIN_BYTES
    # ...and it still repairs: the budget is spent, not wasted.
    assert rtx_bytes >= RETRANSMISSION_BUDGET_SHARE * media_bytes * 0.8


def test_stream_rules_gap_wider_than_the_window_and_a_repair_too_late() -> None:
    stream = RtpStreamRecv(VIDEO_SSRC, 90000)
    stream.receive(1000, 0, 1.0, 100)
    assert stream.receive(1000 + REPAIR_WINDOW + 1, 0, 1.1, 100) == REPAIR_WINDOW
    assert stream.receive(1000 + 2 * REPAIR_WINDOW + 3, 0, 1.2, 100) == GAP_TOO_WIDE
    # 1001 is still missing, but now far out of the window: when it comes, it is too late.
    assert stream.receive(1001, 0, 1.3, 100) == TOO_LATE
    # The timer gives up what fell out of the window.
    due, gave_up = stream.nack_list(1.3, 0.05, 1.0, 10)
    assert gave_up
    assert due == []
    assert stream.missing == {}


@pytest.mark.parametrize("gap", [REPAIR_WINDOW, REPAIR_WINDOW + 1, 100])
async def test_a_gap_is_repaired_or_closed_with_a_keyframe(gap: int) -> None:
    await _run_gap_case(gap, delay=2, repaired=None, as_rtx=True)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    gap=st.integers(1, 3 * REPAIR_WINDOW),
    delay=st.integers(0, 2 * REPAIR_WINDOW),
    repaired=st.lists(st.booleans(), min_size=1, max_size=3 * REPAIR_WINDOW),
    as_rtx=st.booleans(),
    timer_every=st.integers(1, 8),
)
def test_every_packet_asked_for_is_forwarded_or_its_gap_closed_with_a_keyframe(
    gap: int, delay: int, repaired: list[bool], as_rtx: bool, timer_every: int
) -> None:
    asyncio.run(_run_gap_case(gap, delay, repaired, as_rtx, timer_every))


async def _run_gap_case(
    gap: int, delay: int, repaired: list[bool] | None, as_rtx: bool, timer_every: int = 3
) -> None:
    """A stream loses ``gap`` packets; ``delay`` packets later the publisher's
    repairs of some of them come (all when ``repaired`` is None), as RTX or
    plain. The NACK timer runs every ``timer_every`` packets. Then:
    - every missing packet was NACKed, or a keyframe was asked for after the gap;
    - every repair that came was forwarded, or a keyframe was asked for;
    - the consumer dropped nothing as late that the producer let through."""
    producer, consumer, producer_transport, out = make_pair("video")
    keyframe_requests: list[float] = []
    producer.request_key_frame = lambda layer=-1: keyframe_requests.append(0.0)  # type: ignore[method-assign]
    stream = producer.streams[VIDEO_SSRC]
    first = 65500  # the numbering wraps during the test
    now = send_stream(producer, first, 20, 10.0, keyframe_first=True)
    producer_transport.rtcp.clear()
    missing = [(first + 20 + i) & 0xFFFF for i in range(gap)]
    resume = (first + 20 + gap) & 0xFFFF
    arriving = [s for i, s in enumerate(missing) if repaired is None or repaired[i % len(repaired)]]

    def timer(i: int) -> None:
        if i % timer_every == 0 and stream.missing:
            producer._send_nacks(stream, now)

    for i in range(delay + 1):
        now = send_stream(producer, (resume + i) & 0xFFFF, 1, now, keyframe_first=False)
        timer(i)
    rtx_seq = 0
    for i, seq in enumerate(arriving):
        if as_rtx:
            rtx_seq += 1
            packet = rtp(98, rtx_seq, seq * FRAME, 3333, struct.pack("!H", seq) + VP8_DELTA)
        else:
            packet = rtp(97, seq, seq * FRAME, VIDEO_SSRC, VP8_DELTA)
        producer.receive_rtp(packet, now)
        now += 0.001
        timer(i)
    producer._send_nacks(stream, now + 2.0)  # the timer's last pass gives up the rest

    nacked = {
        seq
        for packet in producer_transport.rtcp
        for report in rtcp.parse_compound(packet)
        if isinstance(report, rtcp.Nack)
        for seq in report.lost
    }
    offset = consumer.rewriter.seq_offset
    forwarded = {(fields(p)[1] + offset) & 0xFFFF for p in out.rtp if fields(p)[3] == consumer.ssrc}
    closed = bool(keyframe_requests)
    for seq in missing:
        assert seq in nacked or closed, f"{seq} was neither asked for nor replaced by a keyframe"
    for seq in arriving:
        assert seq in forwarded or closed, f"{seq} came, was not forwarded, and no keyframe"
    if gap > REPAIR_WINDOW:
        assert closed, "a gap wider than the window goes straight to a keyframe"
        assert not nacked, "a gap wider than the window goes straight to a keyframe"
    assert consumer.packets_dropped_late == 0, "the producer let through what the consumer drops"
    assert producer.gaps_resynchronized == len(keyframe_requests)
    producer.close()
