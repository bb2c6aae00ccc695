"""Media helpers for tests and bots: synthetic tracks, and a sink that measures what arrives.

- :class:`ToneAudioTrack`: a sine tone, 20 ms s16 frames, paced in real time.
- :class:`PatternVideoTrack`: a moving yuv420p test pattern, paced in real time.
- :class:`TrackSink`: reads a (remote) track in a task; counts video frames and
  their sizes, keeps the last seconds of audio for :meth:`TrackSink.rms`.

Both tracks have an ``enabled`` attribute, which pymediasoup's
``Producer.pause()``/``resume()`` toggle: while disabled they send silence or
black frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

__all__ = ["PatternVideoTrack", "ToneAudioTrack", "TrackSink"]

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90_000
_LAYOUTS = {1: "mono", 2: "stereo"}


class _PacedTrack(MediaStreamTrack):
    """Emits frame n at start + n * period (the first frame at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True
        self._start: float | None = None

    async def _pace(self, seconds_from_start: float) -> None:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now - seconds_from_start
            return
        delay = self._start + seconds_from_start - now
        if delay > 0:
            await asyncio.sleep(delay)
        if self.readyState != "live":
            raise MediaStreamError


class ToneAudioTrack(_PacedTrack):
    """A sine tone: 20 ms ``av.AudioFrame`` s16 frames (stereo by default)."""

    kind = "audio"

    def __init__(
        self,
        frequency: float = 440.0,
        sample_rate: int = 48_000,
        amplitude: float = 0.3,
        *,
        channels: int = 2,
        ptime: float = 0.020,
    ) -> None:
        super().__init__()
        if channels not in _LAYOUTS:
            raise ValueError("channels must be 1 or 2")
        if not 0.0 <= amplitude <= 1.0:
            raise ValueError("amplitude must be within [0, 1]")
        self.frequency = frequency
        self.sample_rate = sample_rate
        self.amplitude = amplitude
        self.channels = channels
        self.samples_per_frame = round(sample_rate * ptime)
        self._time_base = Fraction(1, sample_rate)
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        pts = self._pts
        await self._pace(pts / self.sample_rate)
        self._pts += self.samples_per_frame

        n = self.samples_per_frame
        if self.enabled and self.amplitude > 0:
            index = np.arange(pts, pts + n, dtype=np.float64)
            wave = self.amplitude * np.sin(
                2.0 * math.pi * self.frequency * index / self.sample_rate
            )
            mono = np.round(wave * 32767.0).astype(np.int16)
        else:
            mono = np.zeros(n, dtype=np.int16)
        interleaved = np.repeat(mono, self.channels).reshape(1, n * self.channels)
        frame = av.AudioFrame.from_ndarray(
            interleaved, format="s16", layout=_LAYOUTS[self.channels]
        )
        frame.sample_rate = self.sample_rate
        frame.pts = pts
        frame.time_base = self._time_base
        return frame


class PatternVideoTrack(_PacedTrack):
    """A moving test pattern: ``av.VideoFrame`` yuv420p, pts in 90 kHz units."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: float = 15) -> None:
        super().__init__()
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError("width and height must be positive and even")
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.width = width
        self.height = height
        self.fps = fps
        self.frame_index = 0
        self._time_base = Fraction(1, VIDEO_CLOCK_RATE)
        yy, xx = np.mgrid[0:height, 0:width]
        self._diagonal: npt.NDArray[np.int32] = (xx + yy).astype(np.int32)
        self._box = max(4, min(width, height) // 4) & ~1
        self._chroma_size = (height // 2) * (width // 2)

    def _luma(self, n: int) -> npt.NDArray[np.uint8]:
        luma = ((self._diagonal + 4 * n) % 220 + 16).astype(np.uint8)
        # A bright square crossing the frame, one step per frame.
        box = self._box
        span_x = max(1, self.width - box)
        x = (n * 4) % (2 * span_x)
        x = x if x < span_x else 2 * span_x - x
        y = (self.height - box) // 2
        luma[y : y + box, x : x + box] = 235
        return luma

    async def recv(self) -> av.VideoFrame:
        n = self.frame_index
        await self._pace(n / self.fps)
        self.frame_index += 1

        if self.enabled:
            luma = self._luma(n)
            u_value = 128 + int(60 * math.sin(n / 20.0))
            v_value = 128 + int(60 * math.cos(n / 20.0))
        else:
            luma = np.full((self.height, self.width), 16, dtype=np.uint8)
            u_value = v_value = 128
        u = np.full(self._chroma_size, u_value, dtype=np.uint8)
        v = np.full(self._chroma_size, v_value, dtype=np.uint8)
        planes = np.concatenate([luma.reshape(-1), u, v]).reshape(self.height * 3 // 2, self.width)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = round(n * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = self._time_base
        return frame


def _normalized_samples(frame: av.AudioFrame) -> np.ndarray:
    """The frame's samples, interleaved, as float32 in [-1, 1]."""
    array = frame.to_ndarray()
    if frame.format.is_planar:
        array = array.T
    array = array.reshape(-1)
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if array.dtype == np.int32:
        return (array.astype(np.float64) / 2147483648.0).astype(np.float32)
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    return array.astype(np.float32)


class TrackSink:
    """Reads a track in a task and records what arrives.

    Video: :attr:`frames`, :attr:`size` (last width, height), :attr:`timestamps`
    (``time.monotonic()`` of each arrival, last ``max_timestamps``).
    Audio: :attr:`frames`, :attr:`sample_rate`, :attr:`channels`, the last
    ``max_seconds`` of samples, :meth:`rms`.
    """

    def __init__(
        self,
        track: MediaStreamTrack,
        *,
        max_seconds: float = 10.0,
        max_timestamps: int = 100_000,
    ) -> None:
        self.track = track
        self.kind = track.kind
        self.max_seconds = max_seconds
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.timestamps: deque[float] = deque(maxlen=max_timestamps)
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.sample_rate: int | None = None
        self.channels: int | None = None
        self.ended = False
        self.error: BaseException | None = None
        self._chunks: deque[np.ndarray] = deque()
        self._buffered = 0
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    # --- control -------------------------------------------------------------

    def start(self) -> TrackSink:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def stop(self) -> None:
        """Stop reading (the track itself is left alone)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._set_ended()

    async def wait_frames(self, n: int, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        """Wait until at least ``n`` frames have arrived in total; False on timeout or end."""
        if self.frames >= n:
            return True
        if self.ended:
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (n, future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        return self.frames >= n

    # --- measurements --------------------------------------------------------

    def audio(self, seconds: float | None = None) -> np.ndarray:
        """The last ``seconds`` (default: all kept) of audio, interleaved float32."""
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        samples = np.concatenate(list(self._chunks))
        if seconds is not None and self.sample_rate and self.channels:
            count = int(seconds * self.sample_rate) * self.channels
            samples = samples[-count:] if count > 0 else samples[:0]
        return samples

    def rms(self, seconds: float = 1.0) -> float:
        """RMS of the last ``seconds`` of audio, normalized (full-scale int16 = 1.0)."""
        samples = self.audio(seconds)
        if samples.size == 0:
            return 0.0
        return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))

    def fps(self, window: float = 1.0) -> float:
        """Frames per second over the last ``window`` seconds of arrivals."""
        if not self.timestamps:
            return 0.0
        since = time.monotonic() - window
        return sum(1 for t in self.timestamps if t >= since) / window

    # --- internals -----------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                self._on_frame(frame)
        except MediaStreamError:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("TrackSink(%s): %r", self.kind, exc)
            self.error = exc
        finally:
            self._set_ended()

    def _on_frame(self, frame: object) -> None:
        now = time.monotonic()
        if isinstance(frame, av.VideoFrame):
            self.size = (frame.width, frame.height)
        elif isinstance(frame, av.AudioFrame):
            self._add_audio(frame)
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.last_frame_at = now
        self.timestamps.append(now)
        self._wake(lambda n: self.frames >= n)

    def _add_audio(self, frame: av.AudioFrame) -> None:
        self.sample_rate = frame.sample_rate
        self.channels = frame.layout.nb_channels
        samples = _normalized_samples(frame)
        self._chunks.append(samples)
        self._buffered += samples.size
        cap = int(self.max_seconds * frame.sample_rate) * self.channels
        while self._chunks and self._buffered - self._chunks[0].size >= cap:
            self._buffered -= self._chunks.popleft().size

    def _set_ended(self) -> None:
        self.ended = True
        self._wake(lambda n: True)

    def _wake(self, ready: Callable[[int], bool]) -> None:
        if not self._waiters:
            return
        for n, future in list(self._waiters):
            if ready(n) and not future.done():
                future.set_result(None)
