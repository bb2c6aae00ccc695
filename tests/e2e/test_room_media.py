"""End to end: real pymediasoup peers, a real server process, media decoded on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from pathlib import Path

import pytest

from sfu.client import TrackSink

from ..conftest import ServerProcess, start_server, stop_server
from .helpers import VIDEO_SIZE, Participant, dominant_frequency, join, wait_until

TONES = {"p1": 330.0, "p2": 550.0, "p3": 770.0, "p4": 990.0}


async def close_all(*participants: Participant) -> None:
    await asyncio.gather(*(p.client.close() for p in participants), return_exceptions=True)


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


def drop_incoming_rtp(
    participant: Participant, ssrc: int, fraction: float, seed: int = 7
) -> list[int]:
    """Drop a fraction of one SSRC's RTP at the subscriber, after SRTP, before aiortc sees it.

    Test-only use of aiortc internals: the recv transport's RTCDtlsTransport.
    """
    dropped: list[int] = []
    rng = random.Random(seed)
    pc = participant.client.recv_transport.handler.pc
    dtls = pc.getTransceivers()[0].receiver.transport
    original = dtls._handle_rtp_data

    async def lossy(data: bytes, arrival_time_ms: int) -> None:
        packet_ssrc = struct.unpack_from("!I", data, 8)[0]
        if packet_ssrc == ssrc and rng.random() < fraction:
            dropped.append(struct.unpack_from("!H", data, 2)[0])
            return
        await original(data, arrival_time_ms)

    dtls._handle_rtp_data = lossy
    return dropped


async def test_injected_loss_is_repaired_with_nack_and_rtx(
    sfu_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiortc")
    a = await join(sfu_server, "loss", "p1", TONES["p1"])
    lossy = await join(sfu_server, "loss", "p2", TONES["p2"])
    clean = await join(sfu_server, "loss", "p3", TONES["p3"])
    try:
        for p in (lossy, clean):
            assert await p.client.wait_for_consumers(4, timeout=15)
        lossy_sink = lossy.sink_for("p1", "video")
        clean_sink = clean.sink_for("p1", "video")
        assert await lossy_sink.wait_frames(5, timeout=20)
        consumer = lossy.consumer_for("p1", "video")
        media_ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
        assert consumer.rtp_parameters["encodings"][0].get("rtx"), "consumer has an RTX stream"
        dropped = drop_incoming_rtp(lossy, media_ssrc, 0.03)

        start_lossy, start_clean = lossy_sink.frames, clean_sink.frames
        await asyncio.sleep(6.0)
        got_lossy = lossy_sink.frames - start_lossy
        got_clean = clean_sink.frames - start_clean
        stats = (await lossy.client.request("getConsumerStats", {"consumerId": consumer.id}))[0]
        print(
            f"\ninjected loss: {len(dropped)} packets dropped, server retransmitted "
            f"{stats['packetsRetransmitted']} after {stats['nackCount']} NACKs (held back: "
            f"{stats['retransmissionsSuppressed']}); frames "
            f"{got_lossy} (lossy) vs {got_clean} (clean)"
        )
        assert len(dropped) >= 5, "the loss injection did not bite"
        assert stats["nackCount"] > 0
        assert stats["packetsRetransmitted"] >= len(dropped) * 0.9
        assert got_lossy >= got_clean * 0.9, "repaired stream decodes (almost) every frame"
        decode_failures = [r for r in caplog.records if "failed to decode" in r.getMessage()]
        assert decode_failures == [], decode_failures[:3]
    finally:
        await close_all(a, lossy, clean)
