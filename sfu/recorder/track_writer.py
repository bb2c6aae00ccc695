"""TrackWriter: one recorded track, from RTP packets to a live-written WebM/Matroska file.

Packets wait in a small jitter buffer keyed by extended sequence number; a gap is
NACKed at once and again every ``NACK_INTERVAL`` until the packet arrives or
``MAX_WAIT`` passes (then video asks for a keyframe and writes nothing until one
comes). Frames are remuxed, not decoded: pts are the RTP timestamps from the
first frame, so a pause leaves a gap (re-based on the arrival clock after a
resume, since the consumer keeps its timestamps continuous across a pause).
The container is written as a live stream (no cues, clusters of about a second
flushed as they close), so a killed process leaves a file that decodes up to
its last cluster.
"""

from __future__ import annotations

import fractions
import logging
import statistics
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from ..recording.messages import TrackRequest
from .depacketizer import CONTAINERS, Frame, depacketize

logger = logging.getLogger(__name__)

NACK_INTERVAL = 0.1
MAX_WAIT_VIDEO = 0.6
MAX_WAIT_AUDIO = 0.25
KEYFRAME_REQUEST_INTERVAL = 1.0
# Packets held at most (a burst of loss beyond this is given up at once).
MAX_BUFFERED = 2000
CLUSTER_MILLISECONDS = 1000
# Sender reports whose median places a track on its sender's clock.
MAX_REPORTS = 15

_OPUS_HEAD = struct.Struct("<8sBBHIhB")


@dataclass(slots=True)
class _Packet:
    timestamp: int
    marker: bool
    payload: bytes
    arrival: float


@dataclass
class TrackStats:
    packets: int = 0
    retransmitted: int = 0
    nacked: int = 0
    lost: int = 0
    frames: int = 0
    keyframe_requests: int = 0
    pauses: list[dict[str, float | None]] = field(default_factory=list)


class TrackWriter:
    def __init__(
        self,
        request: TrackRequest,
        directory: Path,
        *,
        clock: Callable[[], float],
        send_nack: Callable[[int, list[int]], None],
        send_pli: Callable[[int], None],
    ) -> None:
        self.request = request
        self.id = request["trackId"]
        self.kind = request["kind"]
        self.mime_type = request["mimeType"]
        self.clock_rate = request["clockRate"]
        self.ssrc = request["ssrc"]
        format_name, extension, self._encoder_name = CONTAINERS[self.mime_type.lower()]
        self._format = format_name
        self.path = directory / f"{request['peerId']}-{self.kind}-{self.id}.{extension}"
        self._clock = clock
        self._send_nack = send_nack
        self._send_pli = send_pli
        self._max_wait = MAX_WAIT_VIDEO if self.kind == "video" else MAX_WAIT_AUDIO
        self.stats = TrackStats()
        self.closed = False
        # Jitter buffer, by extended sequence number.
        self._buffer: dict[int, _Packet] = {}
        self._missing: dict[int, tuple[float, float]] = {}  # seq -> (first seen missing, last NACK)
        self._highest: int | None = None
        self._next: int | None = None
        self._last_timestamp: int | None = None  # extended
        self._need_keyframe = self.kind == "video"
        self._last_keyframe_request = -1e9
        # Output.
        self._container: Any = None
        self._stream: Any = None
        self._pts_origin = 0  # extended RTP timestamp at pts 0
        self._last_pts = -1
        self._last_written_arrival = 0.0
        self._rebase = False
        # The first written frame: its extended RTP timestamp and arrival (the manifest's clock).
        self.first_timestamp: int | None = None
        self.first_arrival: float | None = None
        # Per sender report: the sender-clock time of extended RTP timestamp 0.
        self.report_origins: list[float] = []
        if self._need_keyframe:
            self._request_keyframe(self._clock())

    # ---- packets in --------------------------------------------------------------

    def receive(
        self, sequence: int, timestamp: int, marker: bool, payload: bytes, rtx: bool
    ) -> None:
        if self.closed:
            return
        now = self._clock()
        self.stats.packets += 1
        if rtx:
            self.stats.retransmitted += 1
        extended = self._extend_sequence(sequence)
        if self._next is None:
            self._next = extended
            self._highest = extended
        assert self._highest is not None
        if extended < self._next or extended in self._buffer:
            return  # late (given up) or a duplicate
        self._missing.pop(extended, None)
        if extended > self._highest:
            gap = range(self._highest + 1, extended)
            if len(gap) > MAX_BUFFERED:
                self._skip_to(extended)
            else:
                for missing in gap:
                    self._missing[missing] = (now, now)
                if gap:
                    self._nack(list(gap))
            self._highest = extended
        self._buffer[extended] = _Packet(self._extend_timestamp(timestamp), marker, payload, now)
        self._drain(now)

    def _extend_sequence(self, sequence: int) -> int:
        if self._highest is None:
            return sequence + (1 << 16)  # room below for late packets
        delta = (sequence - self._highest) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        return self._highest + delta

    def _extend_timestamp(self, timestamp: int) -> int:
        if self._last_timestamp is None:
            self._last_timestamp = timestamp + (1 << 32)
            return self._last_timestamp
        delta = (timestamp - self._last_timestamp) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        extended = self._last_timestamp + delta
        self._last_timestamp = max(self._last_timestamp, extended)
        return extended

    def sender_report_received(self, unix_seconds: float, timestamp: int) -> None:
        """A sender report maps an RTP timestamp to the sender's clock; each one gives
        the stream's origin (the time of timestamp 0). The median of the last ones is
        kept: a report from a sender that ran late (a loaded machine, a slow encoder)
        or one mapped across a timestamp resync does not move the track."""
        extended = self._extend_timestamp(timestamp)
        self.report_origins.append(unix_seconds - extended / self.clock_rate)
        del self.report_origins[:-MAX_REPORTS]

    @property
    def synced_by_reports(self) -> bool:
        return bool(self.report_origins)

    def report_spread(self) -> float:
        """How far apart the kept reports place the stream (seconds): 0 for a steady sender."""
        return max(self.report_origins) - min(self.report_origins) if self.report_origins else 0.0

    # ---- the buffer ----------------------------------------------------------------

    def tick(self) -> None:
        """Every few tens of ms: NACK again, give up on old gaps, write what is ready."""
        if self.closed:
            return
        now = self._clock()
        again = [seq for seq, (_, last) in self._missing.items() if now - last >= NACK_INTERVAL]
        if again:
            self._nack(again)
        self._drain(now)
        if self._need_keyframe and now - self._last_keyframe_request >= KEYFRAME_REQUEST_INTERVAL:
            self._request_keyframe(now)

    def _nack(self, sequences: list[int]) -> None:
        now = self._clock()
        for seq in sequences:
            first, _ = self._missing[seq]
            self._missing[seq] = (first, now)
        self.stats.nacked += len(sequences)
        self._send_nack(self.ssrc, [seq & 0xFFFF for seq in sequences])

    def _request_keyframe(self, now: float) -> None:
        self._last_keyframe_request = now
        self.stats.keyframe_requests += 1
        self._send_pli(self.ssrc)

    def _drain(self, now: float) -> None:
        while self._next is not None and not self.closed:
            head = self._buffer.get(self._next)
            if head is None:
                waited = self._missing.get(self._next)
                if waited is None or now - waited[0] < self._max_wait:
                    return
                self._give_up(now)
                continue
            # A frame: the packets from here with one timestamp, up to the marker (video).
            packets = [head]
            seq = self._next
            incomplete = False
            while self.kind == "video" and not packets[-1].marker:
                following = self._buffer.get(seq + 1)
                if following is None:
                    waited = self._missing.get(seq + 1)
                    if waited is None or now - waited[0] < self._max_wait:
                        return  # still to come
                    incomplete = True
                    break
                if following.timestamp != head.timestamp:
                    break  # the marker was lost with no gap: the frame ends here
                packets.append(following)
                seq += 1
            for number in range(self._next, seq + 1):
                self._buffer.pop(number, None)
            self._next = seq + 1
            if incomplete:
                self._give_up(now)
                continue
            self._write(packets, now)

    def _give_up(self, now: float) -> None:
        """The packet at the head will not come: skip to the next one held."""
        assert self._next is not None
        held = [seq for seq in self._buffer if seq > self._next]
        target = min(held) if held else (self._highest or self._next) + 1
        self._skip_to(target)
        if self.kind == "video" and not self._need_keyframe:
            self._need_keyframe = True
            self._request_keyframe(now)

    def _skip_to(self, target: int) -> None:
        assert self._next is not None
        for seq in [s for s in self._missing if s < target]:
            del self._missing[seq]
            self.stats.lost += 1
        for seq in [s for s in self._buffer if s < target]:
            del self._buffer[seq]
        self._next = target
        if self._highest is not None and target > self._highest:
            self._highest = target - 1

    # ---- frames out ------------------------------------------------------------------

    def _write(self, packets: list[_Packet], now: float) -> None:
        try:
            frame = depacketize(self.mime_type, [p.payload for p in packets])
        except Exception:  # a malformed payload: that frame is lost, not the track
            frame = None
        if frame is None:
            return
        if self._need_keyframe:
            # A VP8 keyframe with no size in its header did not start where it should.
            if not frame.keyframe or (self.mime_type.lower() == "video/vp8" and not frame.size):
                return
            self._need_keyframe = False
        timestamp = packets[0].timestamp
        if self._container is None:
            self._open(frame)
            self._pts_origin = timestamp
            self.first_timestamp = timestamp
            self.first_arrival = packets[0].arrival
        elif self._rebase:
            # After a pause: the gap as the arrival clock saw it.
            gap = round((packets[0].arrival - self._last_written_arrival) * self.clock_rate)
            self._pts_origin = timestamp - (self._last_pts + max(gap, 1))
            self._rebase = False
        pts = timestamp - self._pts_origin
        if pts <= self._last_pts:
            if self.kind == "audio":
                return  # a duplicate frame time: Matroska wants increasing audio times
            pts = self._last_pts  # video: same time is allowed (should not happen)
        self._mux(frame, pts)
        self._last_pts = pts
        self._last_written_arrival = packets[0].arrival
        self.stats.frames += 1

    def _open(self, frame: Frame) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(
            str(self.path),
            "w",
            format=self._format,
            container_options={
                # A live stream: no seeking back to write cues or sizes, clusters
                # closed about every second and flushed to the file as they close.
                "live": "1",
                "cluster_time_limit": str(CLUSTER_MILLISECONDS),
                "flush_packets": "1",
            },
        )
        if self.kind == "audio":
            channels = max(1, self.request["channels"] or 2)
            stream = container.add_stream(self._encoder_name, rate=self.clock_rate)
            assert isinstance(stream, av.AudioStream)
            stream.codec_context.layout = "stereo" if channels == 2 else "mono"
            # The OpusHead Matroska needs (RFC 7845): version, channels, pre-skip 312, rate.
            stream.codec_context.extradata = _OPUS_HEAD.pack(
                b"OpusHead", 1, channels, 312, self.clock_rate, 0, 0
            )
        else:
            stream = container.add_stream(self._encoder_name, rate=30)
            assert isinstance(stream, av.VideoStream)
            width, height = frame.size or (640, 480)
            stream.codec_context.width = width
            stream.codec_context.height = height
            stream.codec_context.pix_fmt = "yuv420p"
        stream.time_base = fractions.Fraction(1, self.clock_rate)
        self._container = container
        self._stream = stream
        logger.info("recording %s (%s) into %s", self.id, self.mime_type, self.path)

    def _mux(self, frame: Frame, pts: int) -> None:
        packet = av.Packet(frame.data)
        packet.stream = self._stream
        packet.time_base = fractions.Fraction(1, self.clock_rate)
        packet.pts = pts
        packet.dts = pts
        packet.is_keyframe = frame.keyframe
        self._container.mux(packet)

    # ---- pauses and the end ------------------------------------------------------------

    def set_paused(self, paused: bool, at: float) -> None:
        if paused:
            self.stats.pauses.append({"at": at, "resumedAt": None})
        else:
            if self.stats.pauses and self.stats.pauses[-1]["resumedAt"] is None:
                self.stats.pauses[-1]["resumedAt"] = at
            self._rebase = self._container is not None
            if self.kind == "video":
                self._need_keyframe = True
                self._request_keyframe(self._clock())

    def start_time(self) -> float | None:
        """The first written frame's capture time (unix seconds): from the sender's
        report when there is one (the sender's clock, shared by its tracks), else its arrival."""
        if self.first_timestamp is None:
            return None
        if self.report_origins:
            origin = statistics.median(self.report_origins)
            return origin + self.first_timestamp / self.clock_rate
        return self.first_arrival

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                logger.exception("track %s: closing %s failed", self.id, self.path)
