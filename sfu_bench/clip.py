"""The benchmark's media: a VP8 + Opus clip encoded once, and tracks that loop it.

The clip is encoded with PyAV from synthetic numpy frames (a moving gradient
with some noise, so that the encoder spends a realistic number of bits) and
cached on disk. Publishers loop it without encoding anything: their tracks
return ``av.Packet`` objects, which aiortc's ``RTCRtpSender`` packetizes as
they are (``Encoder.pack``; see ``aiortc/rtcrtpsender.py``,
``_next_encoded_frame``). The timestamps keep increasing across loops.

The reference load is about 140 RTP packets/s per publisher: 640x360 VP8 at
30 fps and ~700 kbit/s with a keyframe every second (~88 packets/s once
packetized into 1300-byte RTP payloads), plus 20 ms Opus (50 packets/s).

A keyframe request (PLI/FIR from the server) makes the video track jump to the
clip's next keyframe: :meth:`VideoPacketTrack.request_keyframe`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

__all__ = [
    "AudioPacketTrack",
    "Clip",
    "ClipSpec",
    "VideoPacketTrack",
    "cache_dir",
    "load_or_encode_clip",
]

VIDEO_CLOCK_RATE = 90_000
AUDIO_CLOCK_RATE = 48_000
OPUS_FRAME_SAMPLES = 960  # 20 ms
_MAGIC = b"SFUCLIP1"


@dataclass(frozen=True)
class ClipSpec:
    width: int = 640
    height: int = 360
    fps: int = 30
    video_bitrate: int = 700_000
    audio_bitrate: int = 32_000
    seconds: int = 4
    keyframe_interval: int = 30  # frames: one keyframe a second at 30 fps

    def key(self) -> str:
        text = json.dumps(self.__dict__, sort_keys=True) + f"|av{av.__version__}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Clip:
    spec: ClipSpec
    video: list[bytes]  # one VP8 frame each, in order
    video_keyframes: list[bool]
    audio: list[bytes]  # one 20 ms Opus packet each

    @property
    def duration(self) -> float:
        return len(self.video) / self.spec.fps


def cache_dir() -> Path:
    """``$SFU_BENCH_CACHE``, else ``$XDG_CACHE_HOME/sfu-bench`` (``~/.cache/sfu-bench``)."""
    explicit = os.environ.get("SFU_BENCH_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sfu-bench"


def _video_frames(spec: ClipSpec, count: int) -> list[av.VideoFrame]:
    rng = np.random.default_rng(1)
    h, w = spec.height, spec.width
    yy, xx = np.mgrid[0:h, 0:w]
    diagonal = (xx + yy).astype(np.int32)
    box = min(w, h) // 4
    frames = []
    for i in range(count):
        luma = ((diagonal + 3 * i) % 200 + 16).astype(np.uint8)
        x = (i * 6) % max(1, w - box)
        luma[h // 3 : h // 3 + box, x : x + box] = 235
        luma = luma + rng.integers(0, 24, size=(h, w), dtype=np.uint8)
        u = np.full((h // 2, w // 2), 128 + int(40 * np.sin(i / 10)), np.uint8)
        v = np.full((h // 2, w // 2), 128 + int(40 * np.cos(i / 13)), np.uint8)
        planes = np.concatenate([luma.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frames.append(frame)
    return frames


def _encode_video(spec: ClipSpec) -> tuple[list[bytes], list[bool]]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = spec.width
    codec.height = spec.height
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, spec.fps)
    codec.framerate = Fraction(spec.fps, 1)
    codec.bit_rate = spec.video_bitrate
    codec.gop_size = spec.keyframe_interval
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",  # no invisible alt-ref frames: one packet per frame
        "auto-alt-ref": "0",
        "error-resilient": "1",
        "kf-min-dist": str(spec.keyframe_interval),
        "kf-max-dist": str(spec.keyframe_interval),
        "end-usage": "cbr",
        "buf-sz": "1000",
        "buf-initial-sz": "500",
        "buf-optimal-sz": "600",
    }
    # One extra keyframe interval first: the very first keyframe of a fresh
    # encoder is several times larger than the later ones; it is dropped.
    warmup = spec.keyframe_interval
    total = warmup + spec.seconds * spec.fps
    packets: list[tuple[bytes, bool]] = []
    for index, frame in enumerate(_video_frames(spec, total)):
        frame.pts = index
        frame.time_base = codec.time_base
        packets.extend((bytes(p), bool(p.is_keyframe)) for p in codec.encode(frame))
    packets.extend((bytes(p), bool(p.is_keyframe)) for p in codec.encode(None))
    packets = packets[warmup : warmup + spec.seconds * spec.fps]
    if not packets or not packets[0][1]:
        raise RuntimeError("the encoded clip does not start with a keyframe")
    return [p for p, _ in packets], [k for _, k in packets]


def _encode_audio(spec: ClipSpec) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_CLOCK_RATE
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = spec.audio_bitrate
    codec.time_base = Fraction(1, AUDIO_CLOCK_RATE)
    count = spec.seconds * AUDIO_CLOCK_RATE // OPUS_FRAME_SAMPLES
    rng = np.random.default_rng(2)
    packets: list[bytes] = []
    for i in range(count + 1):
        t = np.arange(i * OPUS_FRAME_SAMPLES, (i + 1) * OPUS_FRAME_SAMPLES) / AUDIO_CLOCK_RATE
        wave = 0.25 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)
        mono = np.clip(wave * 32767, -32768, 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = AUDIO_CLOCK_RATE
        frame.pts = i * OPUS_FRAME_SAMPLES
        frame.time_base = codec.time_base
        packets.extend(bytes(p) for p in codec.encode(frame))
    packets.extend(bytes(p) for p in codec.encode(None))
    return packets[:count]


def _write(path: Path, clip: Clip) -> None:
    index = {
        "spec": clip.spec.__dict__,
        "video": [len(p) for p in clip.video],
        "keyframes": clip.video_keyframes,
        "audio": [len(p) for p in clip.audio],
    }
    header = json.dumps(index).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: write a temporary file next to it, then rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".clip-")
    with os.fdopen(fd, "wb") as f:
        f.write(_MAGIC + struct.pack("!I", len(header)) + header)
        for p in clip.video:
            f.write(p)
        for p in clip.audio:
            f.write(p)
    os.replace(tmp, path)


def _read(path: Path, spec: ClipSpec) -> Clip | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        return None
    (size,) = struct.unpack_from("!I", data, len(_MAGIC))
    pos = len(_MAGIC) + 4
    try:
        index = json.loads(data[pos : pos + size])
    except ValueError:
        return None
    pos += size
    video, audio = [], []
    for n in index["video"]:
        video.append(data[pos : pos + n])
        pos += n
    for n in index["audio"]:
        audio.append(data[pos : pos + n])
        pos += n
    if pos != len(data) or index["spec"] != spec.__dict__:
        return None
    return Clip(spec, video, [bool(k) for k in index["keyframes"]], audio)


def load_or_encode_clip(spec: ClipSpec | None = None, directory: Path | None = None) -> Path:
    """The cached clip file for ``spec``, encoded now if missing; returns its path."""
    spec = spec or ClipSpec()
    directory = directory or cache_dir()
    path = directory / f"clip-{spec.key()}.bin"
    if _read(path, spec) is None:
        video, keyframes = _encode_video(spec)
        clip = Clip(spec, video, keyframes, _encode_audio(spec))
        try:
            _write(path, clip)
        except OSError:
            # An unwritable cache: fall back to the temporary directory.
            path = Path(tempfile.gettempdir()) / "sfu-bench" / path.name
            _write(path, clip)
    return path


def read_clip(path: Path, spec: ClipSpec | None = None) -> Clip:
    clip = _read(path, spec or ClipSpec())
    if clip is None:
        raise RuntimeError(f"unreadable clip file {path}")
    return clip


class _LoopingTrack(MediaStreamTrack):
    """Emits packet n at start + n * period (the first one at once); stops at ``stop()``."""

    def __init__(self, period: float) -> None:
        super().__init__()
        self.enabled = True
        self._period = period
        self._start: float | None = None
        self._n = 0
        self.packets_out = 0
        self.lag = 0.0  # how late the last packet left, against the schedule (s)
        self.max_lag = 0.0  # the most since the last reset

    async def _pace(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        n = self._n
        self._n += 1
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            delay = self._start + n * self._period - now
            if delay > 0:
                await asyncio.sleep(delay)
        if self.readyState != "live":
            raise MediaStreamError
        self.packets_out += 1
        self.lag = max(0.0, time.monotonic() - (self._start + n * self._period))
        self.max_lag = max(self.max_lag, self.lag)
        return n


class VideoPacketTrack(_LoopingTrack):
    """Loops the clip's VP8 frames as ``av.Packet``; 90 kHz pts increasing forever."""

    kind = "video"

    def __init__(self, clip: Clip) -> None:
        super().__init__(1.0 / clip.spec.fps)
        self._frames = clip.video
        self._keyframes = [i for i, key in enumerate(clip.video_keyframes) if key]
        self._keyframe_set = frozenset(self._keyframes)
        self._ticks = VIDEO_CLOCK_RATE // clip.spec.fps
        self._position = 0
        self._jump = False
        self._time_base = Fraction(1, VIDEO_CLOCK_RATE)
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        """Called on PLI/FIR: the next frame sent is the clip's next keyframe."""
        self.keyframe_requests += 1
        self._jump = True

    async def recv(self) -> av.Packet[Any]:
        n = await self._pace()
        if self._jump:
            self._jump = False
            if self._position not in self._keyframe_set:
                nxt = next((k for k in self._keyframes if k > self._position), self._keyframes[0])
                self._position = nxt
        packet = av.Packet(self._frames[self._position])
        packet.pts = n * self._ticks
        packet.time_base = self._time_base
        self._position = (self._position + 1) % len(self._frames)
        return packet


class AudioPacketTrack(_LoopingTrack):
    """Loops the clip's 20 ms Opus packets as ``av.Packet``; 48 kHz pts increasing forever."""

    kind = "audio"

    def __init__(self, clip: Clip) -> None:
        super().__init__(OPUS_FRAME_SAMPLES / AUDIO_CLOCK_RATE)
        self._packets = clip.audio
        self._time_base = Fraction(1, AUDIO_CLOCK_RATE)

    async def recv(self) -> av.Packet[Any]:
        n = await self._pace()
        packet = av.Packet(self._packets[n % len(self._packets)])
        packet.pts = n * OPUS_FRAME_SAMPLES
        packet.time_base = self._time_base
        return packet
