"""Cheap load clients: publishers that loop a pre-encoded clip, subscribers that count and drop.

Each class is one room participant running on the event loop of a load
process (:mod:`sfu_bench.worker`); several share a process.

- :class:`SfuParticipant` joins the SFU with :class:`sfu.client.SfuClient`.
  It may publish the clip (audio, video or both) and may consume: then every
  SRTP packet its receive transport gets is counted by its clear-text RTP
  header as it comes off the socket, and dropped without decryption
  (:class:`RtpCounter`, ``aiortc_hooks.intercept_incoming_srtp``); it sends
  its own receiver reports, every second with video and every 5 s for audio
  alone, as libwebrtc does (:class:`ReceiverReports`). Where the C extension
  ``sfu_bench._counter`` is built, it reads and counts those packets itself,
  a batch of them per system call (``SFU_BENCH_NATIVE_COUNTER=0``: the Python
  path).
- :class:`MutedMember` is a signaling-only member (joined, no transports):
  the many silent members of a voice channel.
- :class:`RelayPublisher` and :class:`RelaySubscriber` do the same against
  the MediaRelay baseline (:mod:`sfu_bench.baseline`), over plain aiortc
  ``RTCPeerConnection`` and an HTTP offer/answer exchange.

Latency: a publisher notes, for the first packet of every frame, (producer,
RTP timestamp) -> the time it hands the packet to SRTP; a subscriber notes
(producer, RTP timestamp) -> when the first packet of that frame reached its
UDP socket (the kernel's receive time stamp, :func:`arrival_time`) and when
it read it. The first is the server's added latency; the second adds the
time the packet waited for the load process (hundreds of subscribers share
a few processes and two cores with the server). Both use
``time.monotonic()``'s clock (CLOCK_MONOTONIC, one clock for every process of
the machine). The SFU keeps a consumer's timestamps equal to its producer's
until the consumer has to resync (a pause, a gap), so the pairs match;
:mod:`sfu_bench.scenarios` joins them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import secrets
import struct
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from sfu.client import RemoteConsumer, SfuClient
from sfu.client.protoo import ProtooConnection
from sfu.media.rtcp import ReportBlock, build_rr

from .aiortc_hooks import (
    intercept_incoming_srtp,
    observe_outgoing_rtp,
    on_keyframe_request,
    send_rtcp,
    sender_ssrc,
    stop_idle_receiver_reports,
)
from .clip import AudioPacketTrack, Clip, VideoPacketTrack

__all__ = [
    "MutedMember",
    "ReceiverReports",
    "Recorder",
    "RelayPublisher",
    "RelaySubscriber",
    "RtpCounter",
    "SfuParticipant",
]

logger = logging.getLogger(__name__)

try:
    from . import _counter as native_counter
except ImportError:  # not built: the Python path counts
    native_counter = None  # type: ignore[assignment]
NATIVE_COUNTER = native_counter is not None and os.environ.get("SFU_BENCH_NATIVE_COUNTER") != "0"

_SSRC_TS = struct.Struct("!II")  # timestamp, SSRC at offset 4
# libwebrtc's report intervals (a receiver of video reports every second, of audio alone
# every 5 s), each varied over 0.5-1.5 times as RFC 3550 asks.
VIDEO_REPORT_INTERVAL = 1.0
AUDIO_REPORT_INTERVAL = 5.0
REPORT_TICK = 0.1
CLOSE_TIMEOUT = 10.0
RECEIVE_BUFFER = 4 * 1024 * 1024


# SIOCGSTAMPNS (linux/sockios.h): the kernel's receive time (CLOCK_REALTIME, a
# struct timespec) of the last datagram read from a socket. The first call on a
# socket turns its time-stamping on.
_SIOCGSTAMPNS = 0x8907
_TIMESPEC = struct.Struct("@ll")


def arrival_time(fd: int, read_time: float) -> float:
    """When the datagram just read from ``fd`` reached the socket, on ``time.monotonic()``'s clock.

    ``read_time`` (``time.monotonic()`` when it was read) where the kernel
    does not tell: no socket, another OS, or a datagram that came before
    time-stamping was on (the kernel then answers with the present time).
    """
    if fd < 0:
        return read_time
    try:
        sec, nsec = _TIMESPEC.unpack(fcntl.ioctl(fd, _SIOCGSTAMPNS, bytes(_TIMESPEC.size)))
    except OSError:
        return read_time
    stamp: float = sec + nsec * 1e-9 - (time.time() - time.monotonic())
    return min(stamp, read_time)


class Recorder:
    """Latency samples of one load process; recording only inside the measuring window."""

    def __init__(self) -> None:
        self.recording = False
        # (producer id, RTP timestamp, monotonic time)
        self.sent: list[tuple[str, int, float]] = []
        # (producer id, RTP timestamp, arrival at the socket, read from it)
        self.received: list[tuple[str, int, float, float]] = []


class _Stream:
    __slots__ = (
        "base_seq",
        "bytes",
        "first_frame_time",
        "first_time",
        "kind",
        "last_ts",
        "max_seq",
        "packets",
        "prior_expected",
        "prior_received",
        "producer_id",
        "ssrc",
    )

    def __init__(self, ssrc: int, producer_id: str, kind: str) -> None:
        self.ssrc = ssrc
        self.producer_id = producer_id
        self.kind = kind
        self.packets = 0
        self.bytes = 0
        self.base_seq = -1
        self.max_seq = -1  # extended (cycles << 16 | seq)
        self.last_ts = -1
        self.first_time = 0.0
        self.first_frame_time = 0.0
        self.prior_expected = 0
        self.prior_received = 0

    @property
    def expected(self) -> int:
        return self.max_seq - self.base_seq + 1 if self.packets else 0


class RtpCounter:
    """Counts RTP packets per SSRC from the fixed header (clear text in SRTP too).

    Bytes are SRTP bytes (with the 10-byte authentication tag).

    With ``learn`` an unknown SSRC becomes a new stream (for the baseline,
    whose SSRCs are not signalled); otherwise it is only counted as unknown.

    ``native`` (when the C extension is built, and not with ``learn``): the
    C counter that ``intercept_incoming_srtp(..., reader=counter.reader())``
    lets read the sockets. It counts the same things; :meth:`sync` copies its
    figures into :attr:`streams`, and the reading methods here call it first.
    """

    def __init__(
        self, recorder: Recorder, *, learn: bool = False, native: bool = NATIVE_COUNTER
    ) -> None:
        self.recorder = recorder
        self.learn = learn
        self.streams: dict[int, _Stream] = {}
        self.rtx_ssrcs: set[int] = set()
        self.rtx_packets = 0
        self.unknown_packets = 0
        self.native = (
            native_counter.RtpCounter(recorder) if native and not learn and native_counter else None
        )

    def add_stream(self, ssrc: int, producer_id: str, kind: str, rtx_ssrc: int | None) -> None:
        if ssrc not in self.streams:
            self.streams[ssrc] = _Stream(ssrc, producer_id, kind)
            if self.native is not None:
                self.native.add_stream(ssrc, producer_id, kind == "audio")
        if rtx_ssrc is not None and rtx_ssrc not in self.rtx_ssrcs:
            self.rtx_ssrcs.add(rtx_ssrc)
            if self.native is not None:
                self.native.add_rtx(rtx_ssrc)

    def reader(self) -> NativeReader | None:
        """What reads this counter's sockets in C (None: the Python path, ``self(...)``)."""
        return NativeReader(self.native) if self.native is not None else None

    def sync(self) -> None:
        """Copy the C counter's figures into :attr:`streams` (once it reads a socket)."""
        native = self.native
        if native is None or not native.watching:
            return
        for ssrc, packets, size, base_seq, max_seq, first, first_frame in native.streams():
            stream = self.streams[ssrc]
            stream.packets = packets
            stream.bytes = size
            stream.base_seq = base_seq
            stream.max_seq = max_seq
            stream.first_time = first
            stream.first_frame_time = first_frame
        self.rtx_packets = native.rtx_packets
        self.unknown_packets = native.unknown_packets

    def __call__(self, data: bytes, fd: int = -1) -> None:
        if len(data) < 12:
            return
        ts, ssrc = _SSRC_TS.unpack_from(data, 4)
        stream = self.streams.get(ssrc)
        if stream is None:
            if ssrc in self.rtx_ssrcs:
                self.rtx_packets += 1
                return
            if not self.learn:
                self.unknown_packets += 1
                return
            stream = self.streams[ssrc] = _Stream(ssrc, f"ssrc:{ssrc}", "unknown")
        now = time.monotonic()
        seq = (data[2] << 8) | data[3]
        if stream.packets == 0:
            stream.base_seq = stream.max_seq = seq
            stream.first_time = now
            arrival_time(fd, now)  # turns the socket's time-stamping on, long before the window
        else:
            delta = (seq - stream.max_seq) & 0xFFFF
            if delta < 0x8000:
                stream.max_seq += delta
        stream.packets += 1
        stream.bytes += len(data)
        if not stream.first_frame_time and (stream.kind == "audio" or data[1] & 0x80):
            stream.first_frame_time = now  # the end of the first whole frame
        if ts != stream.last_ts:
            stream.last_ts = ts
            if self.recorder.recording:
                arrival = arrival_time(fd, now)
                self.recorder.received.append((stream.producer_id, ts, arrival, now))

    def report_blocks(self) -> list[ReportBlock]:
        self.sync()
        blocks = []
        for stream in self.streams.values():
            if not stream.packets:
                continue
            expected = stream.expected
            interval_expected = expected - stream.prior_expected
            interval_received = stream.packets - stream.prior_received
            stream.prior_expected = expected
            stream.prior_received = stream.packets
            interval_lost = interval_expected - interval_received
            fraction = (
                min(255, (interval_lost << 8) // interval_expected)
                if interval_expected > 0 and interval_lost > 0
                else 0
            )
            lost = max(-0x800000, min(0x7FFFFF, expected - stream.packets))
            blocks.append(
                ReportBlock(stream.ssrc, fraction, lost, stream.max_seq & 0xFFFFFFFF, 0, 0, 0)
            )
        return blocks

    def totals(self) -> dict[str, int]:
        self.sync()
        return {
            "received": sum(s.packets for s in self.streams.values()),
            "expected": sum(s.expected for s in self.streams.values()),
            "bytes": sum(s.bytes for s in self.streams.values()),
            "streams_with_media": sum(1 for s in self.streams.values() if s.packets),
            "rtx": self.rtx_packets,
            "unknown": self.unknown_packets,
        }


class NativeReader:
    """Puts a subscriber's sockets in its load process's C poller (one epoll set,
    which the event loop watches), read for its C counter."""

    _pollers: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, counter: Any) -> None:
        self.counter = counter

    @classmethod
    def poller(cls) -> Any:
        loop = asyncio.get_running_loop()
        poller = cls._pollers.get(loop)
        if poller is None:
            assert native_counter is not None
            poller = cls._pollers[loop] = native_counter.Poller()
            loop.add_reader(poller.fileno(), poller.drain)
        return poller

    def watch(self, fd: int, fallback: Callable[[bytes, Any], None]) -> None:
        self.counter.watch(fd)
        self.poller().add(fd, self.counter, fallback)

    def unwatch(self, fd: int) -> None:
        self.poller().remove(fd)


class ReceiverReports:
    """Sends the receiver reports of every subscriber of a load process, from one task.

    A task per subscriber meant a timer per subscriber: with hundreds in a
    process, the event loop's timer heap cost more than their packets. The
    task wakes up every :data:`REPORT_TICK` and sends the reports that are
    due; each subscriber keeps its own randomized schedule, so reports do not
    reach the server in bursts.
    """

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReceiverReports]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self._due: dict[_Base, float] = {}  # subscriber -> when its next report is due
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of_running_loop(cls) -> ReceiverReports:
        loop = asyncio.get_running_loop()
        reports = cls._by_loop.get(loop)
        if reports is None:
            reports = cls._by_loop[loop] = cls()
        return reports

    def __len__(self) -> int:
        return len(self._due)

    def add(self, member: _Base) -> None:
        loop = asyncio.get_running_loop()
        self._due[member] = loop.time() + member.report_interval() * (0.5 + random.random())
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())

    def discard(self, member: _Base) -> None:
        self._due.pop(member, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._due:
            await asyncio.sleep(REPORT_TICK)
            now = loop.time()
            for member in [m for m, due in self._due.items() if due <= now]:
                if member not in self._due:  # closed while an earlier report was sent
                    continue
                self._due[member] = now + member.report_interval() * (0.5 + random.random())
                try:
                    sent = await member.send_report()
                except Exception:  # one subscriber's failure must not stop the others' reports
                    logger.exception("receiver report failed")
                    sent = False
                if not sent:
                    self.discard(member)


class _SendObserver:
    """Notes the send time of the first packet of each frame, per publisher SSRC."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.producers: dict[int, str] = {}  # publisher SSRC -> producer id
        self._last_ts: dict[int, int] = {}
        self.packets = 0

    def __call__(self, data: bytes) -> None:
        if len(data) < 12 or 192 <= data[1] <= 223:  # RTCP
            return
        ts, ssrc = _SSRC_TS.unpack_from(data, 4)
        producer_id = self.producers.get(ssrc)
        if producer_id is None:
            return
        self.packets += 1
        if self._last_ts.get(ssrc) != ts:
            self._last_ts[ssrc] = ts
            if self.recorder.recording:
                self.recorder.sent.append((producer_id, ts, time.monotonic()))


@dataclass
class ClientSpec:
    """What one load client does. Plain data: it crosses process boundaries."""

    role: str  # "sfu", "muted", "relay-publisher", "relay-subscriber"
    peer_id: str
    room: str
    audio: bool = False  # publish the clip's audio
    video: bool = False  # publish the clip's video
    consume: bool = False
    expect_streams: int = 0  # streams a subscriber should receive
    measure_join: bool = True


class _Base:
    def __init__(self, spec: ClientSpec, url: str, clip: Clip, recorder: Recorder) -> None:
        self.spec = spec
        self.url = url
        self.clip = clip
        self.recorder = recorder
        self.counter = RtpCounter(recorder, learn=spec.role == "relay-subscriber")
        self.sender = _SendObserver(recorder)
        self.tracks: list[AudioPacketTrack | VideoPacketTrack] = []
        self.join_started = 0.0
        self.closed = False
        self._report_transport: Any = None
        # The RTCPeerConnection that receives, and those of its receivers whose own
        # (empty) report task is stopped.
        self._receiving_pc: Any = None
        self._quiet_receivers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._rr_ssrc = int.from_bytes(secrets.token_bytes(4), "big") or 1

    @property
    def is_subscriber(self) -> bool:
        return self.spec.consume and self.spec.expect_streams > 0

    @property
    def ready(self) -> bool:
        return self.counter.totals()["streams_with_media"] >= self.spec.expect_streams

    def join_ms(self) -> tuple[float | None, float | None]:
        """(first packet, first whole frame) after the join started, in ms."""
        self.counter.sync()
        streams = [s for s in self.counter.streams.values() if s.packets]
        if not streams or not self.spec.measure_join:
            return None, None
        first = min(s.first_time for s in streams)
        frames = [s.first_frame_time for s in streams if s.first_frame_time]
        video = [s.first_frame_time for s in streams if s.kind == "video" and s.first_frame_time]
        frame = min(video) if video else (min(frames) if frames else None)
        return (
            (first - self.join_started) * 1000,
            (frame - self.join_started) * 1000 if frame is not None else None,
        )

    def _make_tracks(self) -> list[AudioPacketTrack | VideoPacketTrack]:
        tracks: list[AudioPacketTrack | VideoPacketTrack] = []
        if self.spec.audio:
            tracks.append(AudioPacketTrack(self.clip))
        if self.spec.video:
            tracks.append(VideoPacketTrack(self.clip))
        self.tracks = tracks
        return tracks

    def _hook_sender(
        self, sender: RTCRtpSender, track: AudioPacketTrack | VideoPacketTrack
    ) -> None:
        if isinstance(track, VideoPacketTrack):
            on_keyframe_request(sender, track.request_keyframe)
        observe_outgoing_rtp(sender.transport, self.sender)

    def _start_receiver_reports(self, dtls_transport: Any) -> None:
        # A big receive buffer, as the server has: a load process that the (shared)
        # machine leaves without CPU for a moment queues packets instead of losing them,
        # so that loss measures the server, not the load clients.
        intercept_incoming_srtp(
            dtls_transport,
            self.counter,
            receive_buffer=RECEIVE_BUFFER,
            reader=self.counter.reader(),
        )
        self._report_transport = dtls_transport
        ReceiverReports.of_running_loop().add(self)

    def report_interval(self) -> float:
        if any(s.kind != "audio" for s in self.counter.streams.values()):
            return VIDEO_REPORT_INTERVAL
        return AUDIO_REPORT_INTERVAL

    async def send_report(self) -> bool:
        """Send a receiver report of what the counter saw; False once the transport is gone."""
        if self.closed or self._report_transport is None:
            return False
        if self._receiving_pc is not None:  # receivers start their tasks as they connect
            for transceiver in self._receiving_pc.getTransceivers():
                receiver = transceiver.receiver
                if receiver not in self._quiet_receivers and stop_idle_receiver_reports(receiver):
                    self._quiet_receivers.add(receiver)
        blocks = self.counter.report_blocks()
        if not blocks:
            return True
        try:
            await send_rtcp(self._report_transport, build_rr(self._rr_ssrc, blocks))
        except ConnectionError:
            return False
        return True

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        self.closed = True
        ReceiverReports.of_running_loop().discard(self)
        for track in self.tracks:
            track.stop()


class SfuParticipant(_Base):
    """A peer of the SFU: publishes the clip and/or counts what it consumes."""

    def __init__(self, spec: ClientSpec, url: str, clip: Clip, recorder: Recorder) -> None:
        super().__init__(spec, url, clip, recorder)
        self.client: SfuClient | None = None
        self._dtls: Any = None

    async def start(self) -> None:
        publish = self.spec.audio or self.spec.video
        client = SfuClient(
            self.url,
            self.spec.room,
            self.spec.peer_id,
            display_name=self.spec.peer_id,
            ice_addresses=["127.0.0.1"],
            produce=publish,
            consume=self.spec.consume,
            auto_reconnect=False,
            request_timeout=30.0,
        )
        self.client = client
        client.on("newconsumer", self._on_consumer)
        self.join_started = time.monotonic()
        await client.join()
        for track in self._make_tracks():
            producer_id = await client.produce(track)
            producer = client.producers[producer_id]
            sender = producer.rtpSender
            ssrc = producer.rtpParameters.encodings[0].ssrc
            self.sender.producers[ssrc] = producer_id
            self._hook_sender(sender, track)

    def _on_consumer(self, remote: RemoteConsumer) -> None:
        encoding = (remote.rtp_parameters.get("encodings") or [{}])[0]
        ssrc = encoding.get("ssrc")
        if not isinstance(ssrc, int):
            return
        rtx = (encoding.get("rtx") or {}).get("ssrc")
        self.counter.add_stream(ssrc, remote.producer_id, remote.kind, rtx)
        if self._dtls is None and self.client is not None and self.client.recv_transport:
            # Bundled: every consumer of this transport shares the first one's DTLS transport.
            pc = self._receiving_pc = self.client.recv_transport.handler.pc
            self._dtls = pc.getTransceivers()[0].receiver.transport
            self._start_receiver_reports(self._dtls)

    async def close(self) -> None:
        await super().close()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), CLOSE_TIMEOUT)


class MutedMember(_Base):
    """A member that only holds a signaling connection (joined, no media, not consuming)."""

    def __init__(self, spec: ClientSpec, url: str, clip: Clip, recorder: Recorder) -> None:
        super().__init__(spec, url, clip, recorder)
        self.protoo: ProtooConnection | None = None

    async def start(self) -> None:
        url = f"{self.url}/?roomId={self.spec.room}&peerId={self.spec.peer_id}"
        self.join_started = time.monotonic()
        self.protoo = await ProtooConnection.connect(url, timeout=30.0, heartbeat=None)
        # Requests from the server (none expected without rtpCapabilities) are refused.
        await self.protoo.request(
            "join",
            {
                "displayName": self.spec.peer_id,
                "device": {"flag": "bench", "name": "muted", "version": "0"},
            },
            timeout=30.0,
        )

    async def close(self) -> None:
        await super().close()
        if self.protoo is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.protoo.close(), CLOSE_TIMEOUT)


def _vp8_only(pc: RTCPeerConnection) -> None:
    capabilities = RTCRtpSender.getCapabilities("video")
    codecs = [c for c in capabilities.codecs if c.mimeType in ("video/VP8", "video/rtx")]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(codecs)


class _RelayClient(_Base):
    def __init__(self, spec: ClientSpec, url: str, clip: Clip, recorder: Recorder) -> None:
        super().__init__(spec, url, clip, recorder)
        self.pc: RTCPeerConnection | None = None

    async def _negotiate(self, path: str, pc: RTCPeerConnection) -> None:
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        body = {
            "sdp": pc.localDescription.sdp,
            "type": pc.localDescription.type,
            "room": self.spec.room,
        }
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(f"{self.url}{path}", json=body) as response,
        ):
            response.raise_for_status()
            answer = await response.json()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    async def close(self) -> None:
        await super().close()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), CLOSE_TIMEOUT)


class RelayPublisher(_RelayClient):
    """Publishes the clip to the MediaRelay baseline."""

    async def start(self) -> None:
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.join_started = time.monotonic()
        tracks = self._make_tracks()
        senders = [pc.addTrack(track) for track in tracks]
        _vp8_only(pc)
        await self._negotiate("/publish", pc)
        for sender, track in zip(senders, tracks, strict=True):
            self.sender.producers[sender_ssrc(sender)] = f"{self.spec.peer_id}:{track.kind}"
            self._hook_sender(sender, track)


class RelaySubscriber(_RelayClient):
    """Receives the relayed (re-encoded) tracks from the MediaRelay baseline and counts them."""

    async def start(self) -> None:
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.join_started = time.monotonic()
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        _vp8_only(pc)
        await self._negotiate("/subscribe", pc)
        self._start_receiver_reports(pc.getTransceivers()[0].receiver.transport)
        self._receiving_pc = pc


CLIENT_TYPES: dict[str, Callable[[ClientSpec, str, Clip, Recorder], _Base]] = {
    "sfu": SfuParticipant,
    "muted": MutedMember,
    "relay-publisher": RelayPublisher,
    "relay-subscriber": RelaySubscriber,
}
