"""End to end: real pymediasoup peers, a real server process, media decoded on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from pathlib import Path

import pytest
from aiortc.rtp import RtpPacket

from sfu.client import RemoteConsumer, TrackSink
from sfu.media.loss_repair import MAX_RETRANSMISSION_AGE_VIDEO

from ..conftest import ServerProcess, start_server, stop_server
from .helpers import VIDEO_SIZE, Participant, close_all, dominant_frequency, join, wait_until

TONES = {"p1": 330.0, "p2": 550.0, "p3": 770.0, "p4": 990.0}


async def assert_decodes_from(receiver: Participant, sender_id: str, frames: int = 30) -> None:
    video = receiver.sink_for(sender_id, "video")
    audio = receiver.sink_for(sender_id, "audio")
    assert await video.wait_frames(frames, timeout=30), (
        f"{receiver.client.peer_id} decoded only {video.frames} frames from {sender_id}"
    )
    assert video.size == VIDEO_SIZE
    assert await audio.wait_frames(50, timeout=15)
    left = audio.audio(1.0)[::2]  # interleaved stereo: left channel
    rms = float((left**2).mean() ** 0.5)
    assert rms > 0.1, (
        f"{receiver.client.peer_id} hears near-silence from {sender_id}: rms={rms:.3f}"
    )
    frequency = dominant_frequency(left)
    assert abs(frequency - TONES[sender_id]) < 10, (
        f"{receiver.client.peer_id} hears {frequency:.0f} Hz from {sender_id}, "
        f"expected {TONES[sender_id]:.0f} Hz"
    )


async def test_three_peers_see_and_hear_each_other_and_a_late_joiner_gets_video_fast(
    sfu_server: ServerProcess,
) -> None:
    peers = [await join(sfu_server, "room3", pid, TONES[pid]) for pid in ("p1", "p2", "p3")]
    try:
        for p in peers:
            assert await p.client.wait_for_consumers(4, timeout=15), list(p.client.consumers)
        for receiver in peers:
            for sender in peers:
                if sender is not receiver:
                    await assert_decodes_from(receiver, sender.client.peer_id)

        # Server CPU per forwarded packet over a steady window.
        before_cpu, before = sfu_server.cpu_seconds(), sfu_server.health()
        await asyncio.sleep(3.0)
        after_cpu, after = sfu_server.cpu_seconds(), sfu_server.health()
        forwarded = after["rtpPacketsSent"] - before["rtpPacketsSent"]
        assert forwarded > 0
        assert after["nativeSend"], "the server's consumers do not send through sfu.media._native"
        per_packet_us = (after_cpu - before_cpu) / forwarded * 1e6
        print(
            f"\n3-peer room: {forwarded / 3.0:.0f} forwarded packets/s, "
            f"server CPU {(after_cpu - before_cpu) / 3.0 * 100:.1f} % of a core, "
            f"{per_packet_us:.0f} us of server CPU per forwarded packet "
            "(includes receiving, RTCP and signalling)"
        )

        # A late joiner decodes video within 5 s: it needs the keyframe request,
        # as aiortc publishers send a keyframe only every 3000 frames otherwise.
        started = time.monotonic()
        late = await join(sfu_server, "room3", "p4", TONES["p4"])
        peers.append(late)
        assert await late.client.wait_for_consumers(6, timeout=10)
        for sender_id in ("p1", "p2", "p3"):
            sink = late.sink_for(sender_id, "video")
            assert await sink.wait_frames(1, timeout=max(0.1, 5 - (time.monotonic() - started))), (
                f"late joiner: no video from {sender_id} within 5 s"
            )
        elapsed = time.monotonic() - started
        print(f"late joiner decoded video from all three within {elapsed * 1000:.0f} ms of joining")
        assert elapsed < 5
    finally:
        await close_all(*peers)


async def test_the_python_send_path_forwards_media_too(tmp_path: Path) -> None:
    # SFU_NATIVE_SEND=0 is what a server built without a C compiler runs:
    # header, SRTP and sendto from Python instead of sfu.media._native.
    server = start_server(tmp_path, env={"SFU_NATIVE_SEND": "0"})
    peers: list[Participant] = []
    try:
        assert server.health()["nativeSend"] is False
        peers = [await join(server, "python-send", pid, TONES[pid]) for pid in ("p1", "p2")]
        for p in peers:
            assert await p.client.wait_for_consumers(2, timeout=15), list(p.client.consumers)
        await assert_decodes_from(peers[0], "p2")
        await assert_decodes_from(peers[1], "p1")
    finally:
        await close_all(*peers)
        stop_server(server)


async def test_leaving_peer_is_closed_everywhere_and_others_keep_decoding(
    sfu_server: ServerProcess,
) -> None:
    peers = {pid: await join(sfu_server, "leave", pid, TONES[pid]) for pid in ("p1", "p2", "p3")}
    try:
        for p in peers.values():
            assert await p.client.wait_for_consumers(4, timeout=15)
        closed_consumers: dict[str, list[str]] = {"p1": [], "p2": []}
        closed_peers: dict[str, list[str]] = {"p1": [], "p2": []}
        for pid in ("p1", "p2"):
            peers[pid].client.on("consumerclosed", closed_consumers[pid].append)
            peers[pid].client.on("peerclosed", closed_peers[pid].append)
        doomed = {
            pid: {peers[pid].consumer_for("p3", kind).id for kind in ("audio", "video")}
            for pid in ("p1", "p2")
        }

        await peers["p3"].client.close()
        for pid in ("p1", "p2"):
            assert await wait_until(
                lambda pid=pid: (
                    closed_peers[pid] == ["p3"] and set(closed_consumers[pid]) >= doomed[pid]
                ),
                timeout=5,
            ), f"{pid}: peerClosed={closed_peers[pid]} consumerClosed={closed_consumers[pid]}"
            assert "p3" not in peers[pid].client.peers
            assert all(c.peer_id != "p3" for c in peers[pid].client.consumers.values())
        health = sfu_server.health()
        assert health["peers"] == 2
        assert health["consumers"] == 4
        assert health["producers"] == 4

        # The two who stayed keep decoding each other.
        for receiver, sender in (("p1", "p2"), ("p2", "p1")):
            sink = peers[receiver].sink_for(sender, "video")
            assert await sink.wait_frames(sink.frames + 15, timeout=10)
    finally:
        await close_all(*peers.values())
    assert await wait_until(lambda: sfu_server.health()["rooms"] == 0, timeout=5), (
        "the room closes when its last peer leaves"
    )


async def frames_stop(sink: TrackSink, settle: float = 0.7, window: float = 1.0) -> bool:
    await asyncio.sleep(settle)  # frames already in flight or in the jitter buffer
    count = sink.frames
    await asyncio.sleep(window)
    return sink.frames == count


async def test_pause_and_resume_of_producer_and_consumer(sfu_server: ServerProcess) -> None:
    a = await join(sfu_server, "pause", "p1", TONES["p1"])
    b = await join(sfu_server, "pause", "p2", TONES["p2"])
    try:
        assert await b.client.wait_for_consumers(2, timeout=15)
        sink = b.sink_for("p1", "video")
        assert await sink.wait_frames(10, timeout=20)
        paused_events: list[str] = []
        b.client.on("consumerpaused", paused_events.append)

        # Producer pause: the server stops forwarding and tells the consumer side.
        await a.client.pause_producer(a.producers["video"])
        assert await frames_stop(sink), "frames kept arriving after pauseProducer"
        assert b.consumer_for("p1", "video").id in paused_events
        await a.client.resume_producer(a.producers["video"])
        count = sink.frames
        assert await sink.wait_frames(count + 10, timeout=10), "no frames after resumeProducer"

        # Consumer pause: only this subscriber stops.
        consumer_id = b.consumer_for("p1", "video").id
        await b.client.pause_consumer(consumer_id)
        assert await frames_stop(sink), "frames kept arriving after pauseConsumer"
        await b.client.resume_consumer(consumer_id)
        count = sink.frames
        assert await sink.wait_frames(count + 10, timeout=10), "no frames after resumeConsumer"
        stats = await b.client.request("getConsumerStats", {"consumerId": consumer_id})
        assert stats[0]["packetCount"] > 0
    finally:
        await close_all(a, b)


class InjectedLoss:
    """Drop a fraction of one SSRC's RTP at a subscriber, after SRTP, before
    aiortc sees it, and record the repair as the subscriber sees it.

    The subscriber's lag, how far its own processing is behind the server, is
    measured on every packet of the stream: now minus the abs-send-time the
    server stamps when it forwards the packet (same machine, same clock). For
    each dropped packet: its lag when dropped, when the subscriber first NACKed
    it, and when its RTX arrived, less the lag then: so when the server sent
    the RTX, whatever queue the subscriber had.

    Test-only use of aiortc internals: the recv transport's RTCDtlsTransport.
    """

    def __init__(
        self, participant: Participant, consumer: RemoteConsumer, fraction: float, seed: int = 7
    ) -> None:
        self.dropping = True
        self.dropped: list[int] = []
        self.lag_at_drop: dict[int, float] = {}  # seq -> seconds
        self.nacked_at: dict[int, float] = {}  # seq -> time.time() of its first NACK
        self.resent_at: dict[int, float] = {}  # seq -> when the server sent its first RTX
        self.lag = 0.0
        self.max_lag = 0.0
        encoding = consumer.rtp_parameters["encodings"][0]
        ssrc, rtx_ssrc = encoding["ssrc"], encoding["rtx"]["ssrc"]
        rng = random.Random(seed)
        pc = participant.client.recv_transport.handler.pc
        dtls = pc.getTransceivers()[0].receiver.transport
        extensions = dtls._rtp_header_extensions_map
        original_receive = dtls._handle_rtp_data
        original_send = dtls._send_rtp

        async def receive(data: bytes, arrival_time_ms: int) -> None:
            packet_ssrc = struct.unpack_from("!I", data, 8)[0]
            if packet_ssrc == ssrc:
                sent = RtpPacket.parse(data, extensions).extensions.abs_send_time
                if sent is not None:
                    self.lag = (time.time() - sent / (1 << 18)) % 64.0  # 6.18 s, modulo 64 s
                    self.max_lag = max(self.max_lag, self.lag)
                if self.dropping and rng.random() < fraction:
                    seq = struct.unpack_from("!H", data, 2)[0]
                    self.dropped.append(seq)
                    self.lag_at_drop[seq] = self.lag
                    return
            elif packet_ssrc == rtx_ssrc:
                payload = RtpPacket.parse(data, extensions).payload
                repaired = struct.unpack_from("!H", payload)[0]
                self.resent_at.setdefault(repaired, time.time() - self.lag)
            await original_receive(data, arrival_time_ms)

        async def send(data: bytes) -> None:
            # RTCP transport feedback (205), FMT 1: a generic NACK, FCI at byte 12
            if data[1] == 205 and data[0] & 0x1F == 1 and len(data) >= 16:
                now = time.time()
                for offset in range(12, len(data) - 3, 4):
                    pid, blp = struct.unpack_from("!HH", data, offset)
                    for seq in [pid] + [(pid + i + 1) & 0xFFFF for i in range(16) if blp >> i & 1]:
                        self.nacked_at.setdefault(seq, now)
            await original_send(data)

        dtls._handle_rtp_data = receive
        dtls._send_rtp = send

    def owed(self) -> list[int]:
        """Dropped packets the server must resend: NACKed while younger than
        the server's limit."""
        return [
            seq
            for seq in self.dropped
            if self.lag_at_drop[seq] < MAX_RETRANSMISSION_AGE_VIDEO - OWED_MARGIN
        ]

    def answer_times(self) -> dict[int, float]:
        """Seconds from each owed packet's first NACK to its RTX leaving the server."""
        return {
            seq: self.resent_at[seq] - self.nacked_at[seq]
            for seq in self.owed()
            if seq in self.resent_at and seq in self.nacked_at
        }


# The server answers a NACK when it reads it (well under a millisecond on
# loopback). The measure is off by the lag's change between the RTX and the
# packet before it in the subscriber's queue (a frame interval, 67 ms, at
# most). An answer that waited for a second NACK (aiortc repeats its list only
# on a new gap, about 0.5 s apart here) or for a timer takes far longer.
ANSWER_BOUND = 0.25

# The subscriber NACKs a lost packet when it processes the next one of the
# stream: a frame interval (67 ms at 15 fps) later at most, well within this.
OWED_MARGIN = 0.5


async def test_injected_loss_is_repaired_with_nack_and_rtx(
    sfu_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """3 % loss injected at one subscriber is repaired: every packet it lost is
    retransmitted (RTX) and it decodes what a clean subscriber decodes, with no
    decode failure.

    The test process is the client: it encodes and decodes in Python, and on a
    busy machine it can fall seconds behind the server. Then the
    retransmission waits in its socket behind the backlog, and a NACK can reach
    the server when the packet is already older than the server may resend
    (MAX_RETRANSMISSION_AGE_VIDEO): not the server's fault. So:

    - the test runs only the media it needs (one publisher of video, two
      subscribers that publish nothing), which keeps the process from
      starving itself (three full peers encoded and decoded twelve streams);
    - what the server owes is checked per packet: every dropped packet that
      the subscriber NACKed while the server could still resend it was
      retransmitted, and its RTX reached the subscriber; and a subscriber that
      lagged past that point is reported as what it is, with its lag measured
      from the abs-send-time the server stamps on each packet;
    - any VP8 decode failure counts: the two subscribers are the only video
      receivers in the process, the server starts each consumer on a keyframe
      that reaches the subscriber (over again if its transport connected
      later: Consumer.on_transport_connected) and the repaired stream has no
      holes, so a decode failure is a frame with a missing or wrong packet,
      or a start on a delta frame: both the server's doing.
    """
    caplog.set_level(logging.WARNING, logger="aiortc")
    a = await join(sfu_server, "loss", "p1", TONES["p1"], audio=False, consume=False)
    lossy = await join(sfu_server, "loss", "p2", TONES["p2"], audio=False, video=False)
    clean = await join(sfu_server, "loss", "p3", TONES["p3"], audio=False, video=False)
    try:
        for p in (lossy, clean):
            assert await p.client.wait_for_consumers(1, timeout=15)
        lossy_sink = lossy.sink_for("p1", "video")
        clean_sink = clean.sink_for("p1", "video")
        assert await lossy_sink.wait_frames(5, timeout=20)
        consumer = lossy.consumer_for("p1", "video")
        assert consumer.rtp_parameters["encodings"][0].get("rtx"), "consumer has an RTX stream"
        loss = InjectedLoss(lossy, consumer, 0.03)

        start_lossy, start_clean = lossy_sink.frames, clean_sink.frames
        await asyncio.sleep(6.0)
        loss.dropping = False
        got_lossy = lossy_sink.frames - start_lossy
        got_clean = clean_sink.frames - start_clean
        # An owed RTX leaves the server at once; the subscriber reaches it
        # after its own lag, which owed() keeps under this.
        assert await wait_until(
            lambda: all(seq in loss.resent_at for seq in loss.owed()),
            timeout=MAX_RETRANSMISSION_AGE_VIDEO,
        )
        answer_times = loss.answer_times()
        stats = (await lossy.client.request("getConsumerStats", {"consumerId": consumer.id}))[0]
        owed = loss.owed()
        print(
            f"\ninjected loss: {len(loss.dropped)} packets dropped, server retransmitted "
            f"{stats['packetsRetransmitted']} after {stats['nackCount']} NACKs (held back: "
            f"{stats['retransmissionsSuppressed']}); {len(loss.resent_at)} repaired at the "
            f"subscriber; frames {got_lossy} (lossy) vs {got_clean} (clean); the subscriber "
            f"lagged up to {loss.max_lag * 1000:.0f} ms behind the server; NACKs answered "
            f"within {max(answer_times.values(), default=0) * 1000:.0f} ms"
        )
        assert len(loss.dropped) >= 5, "the loss injection did not bite"
        assert len(owed) == len(loss.dropped), (
            f"the test process lagged up to {loss.max_lag:.1f} s behind the server: NACKs for "
            f"{sorted(set(loss.dropped) - set(owed))} came too late to be answered "
            "(the machine is overloaded; the server was not asked in time)"
        )
        assert stats["nackCount"] > 0
        missing = [seq for seq in owed if seq not in loss.resent_at]
        assert not missing, f"no RTX reached the subscriber for {missing} (dropped {loss.dropped})"
        # Every owed packet's NACK was seen leaving the subscriber: none escapes the bound.
        assert set(answer_times) == set(owed), (
            f"no NACK seen for {sorted(set(owed) - set(answer_times))}"
        )
        late = {seq: round(t, 3) for seq, t in answer_times.items() if t > ANSWER_BOUND}
        assert not late, f"the server answered NACKs late (seq: seconds): {late}"
        assert got_lossy >= got_clean * 0.9, "repaired stream decodes (almost) every frame"
        decode_failures = [r for r in caplog.records if "failed to decode" in r.getMessage()]
        assert decode_failures == [], decode_failures[:3]
    finally:
        await close_all(a, lossy, clean)
