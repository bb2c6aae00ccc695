"""``sfu compose room.json -o meeting.mp4``: one file for people from a room recording.

A grid of the video tracks present at each moment (it is laid out again as
tracks come and go), the audio tracks mixed, and a progress bar along the
bottom; H.264 and AAC in MP4, encoded with PyAV. Each track is placed by its
manifest start offset and its own timestamps, so pauses stay gaps.
"""

from __future__ import annotations

import fractions
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

AUDIO_RATE = 48000
AUDIO_CHUNK = 1024


@dataclass
class _Video:
    start: float
    frames: Iterator[av.VideoFrame]
    end: float
    current: av.VideoFrame | None = None
    following: av.VideoFrame | None = None
    done: bool = False

    def at(self, t: float) -> av.VideoFrame | None:
        """The frame showing at room time ``t`` (None before the track starts or after it ends)."""
        if t < self.start or t > self.end:
            return None
        local = t - self.start
        while not self.done:
            if self.following is None:
                self.following = next(self.frames, None)
                if self.following is None:
                    self.done = True
                    break
            if _seconds(self.following) > local:
                break
            self.current, self.following = self.following, None
        return self.current


@dataclass
class _Audio:
    start: float
    frames: Iterator[npt.NDArray[np.float32]]  # (samples, 2) at AUDIO_RATE, with their start
    pending: npt.NDArray[np.float32]
    position: int  # room sample index of pending[0]
    done: bool = False

    def mix_into(self, out: npt.NDArray[np.float32], first: int) -> None:
        last = first + len(out)
        while not self.done and self.position + len(self.pending) < last:
            chunk = next(self.frames, None)
            if chunk is None:
                self.done = True
                break
            self.pending = np.concatenate([self.pending, chunk])
        begin = max(first, self.position)
        end = min(last, self.position + len(self.pending))
        if end > begin:
            out[begin - first : end - first] += self.pending[
                begin - self.position : end - self.position
            ]
        drop = max(0, last - self.position)
        self.pending = self.pending[drop:]
        self.position += drop


def _seconds(frame: av.VideoFrame | av.AudioFrame) -> float:
    if frame.pts is None or frame.time_base is None:
        return 0.0
    return float(frame.pts * frame.time_base)


def _duration(path: Path) -> float:
    """The last timestamp of a one-track file (read packet by packet: live files have no index)."""
    last = 0.0
    with av.open(str(path)) as container:
        try:
            for packet in container.demux(container.streams[0]):
                if packet.pts is not None and packet.time_base is not None:
                    last = max(last, float(packet.pts * packet.time_base))
        except av.error.InvalidDataError:
            pass  # a file cut by a crash
    return last


def _video_frames(path: Path) -> Iterator[av.VideoFrame]:
    with av.open(str(path)) as container:
        try:
            yield from container.decode(container.streams.video[0])
        except av.error.InvalidDataError:
            return


def _audio_chunks(path: Path, start_sample: int) -> Iterator[npt.NDArray[np.float32]]:
    """Stereo float samples at AUDIO_RATE, with silence in the gaps (pauses)."""
    resampler = av.AudioResampler(format="flt", layout="stereo", rate=AUDIO_RATE)
    written = 0
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(container.streams.audio[0]):
                at = round(_seconds(frame) * AUDIO_RATE)
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1, 2).astype(np.float32)
                    if at > written + AUDIO_RATE // 50:  # a gap of more than 20 ms
                        yield np.zeros((at - written, 2), np.float32)
                        written = at
                    yield samples
                    written += len(samples)
        except av.error.InvalidDataError:
            return


def _grid(count: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Cells (x, y, w, h) for ``count`` tiles, even sizes."""
    if count == 0:
        return []
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    cell_w, cell_h = (width // columns) & ~1, (height // rows) & ~1
    return [((i % columns) * cell_w, (i // columns) * cell_h, cell_w, cell_h) for i in range(count)]


def _fit(frame: av.VideoFrame, cell_w: int, cell_h: int) -> npt.NDArray[np.uint8]:
    scale = min(cell_w / frame.width, cell_h / frame.height)
    w, h = max(2, int(frame.width * scale) & ~1), max(2, int(frame.height * scale) & ~1)
    image = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
    return np.asarray(image, dtype=np.uint8)


def compose(
    manifest_path: Path,
    output: Path,
    *,
    size: tuple[int, int] = (1280, 720),
    fps: int = 15,
) -> float:
    """Render the room into ``output``; returns its duration in seconds."""
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    directory = manifest_path.parent
    tracks = [t for t in manifest["tracks"] if t.get("file") and t.get("startOffset") is not None]
    videos: list[_Video] = []
    audios: list[_Audio] = []
    duration = 0.0
    for track in tracks:
        path = directory / track["file"]
        start = float(track["startOffset"])
        end = start + _duration(path)
        duration = max(duration, end)
        if track["kind"] == "video":
            videos.append(_Video(start, _video_frames(path), end))
        else:
            first = round(start * AUDIO_RATE)
            audios.append(
                _Audio(start, _audio_chunks(path, first), np.zeros((0, 2), np.float32), first)
            )
    width, height = size
    with av.open(str(output), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "23"}
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        assert isinstance(audio, av.AudioStream)
        audio.layout = "stereo"
        total_frames = max(1, math.ceil(duration * fps))
        audio_written = 0
        for index in range(total_frames):
            t = index / fps
            canvas = np.zeros((height, width, 3), np.uint8)
            showing = [(v, f) for v in videos if (f := v.at(t)) is not None]
            for (x, y, w, h), (_, frame) in zip(
                _grid(len(showing), width, height - 8), showing, strict=False
            ):
                image = _fit(frame, w, h)
                top, left = y + (h - image.shape[0]) // 2, x + (w - image.shape[1]) // 2
                canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
            canvas[height - 6 : height - 2, : int(width * (index + 1) / total_frames)] = (
                230,
                60,
                60,
            )
            out = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            out.pts = index
            out.time_base = fractions.Fraction(1, fps)
            for packet in video.encode(out):
                container.mux(packet)
            # The audio up to the end of this video frame.
            until = round((index + 1) / fps * AUDIO_RATE)
            while audio_written + AUDIO_CHUNK <= until:
                mix = np.zeros((AUDIO_CHUNK, 2), np.float32)
                for source in audios:
                    source.mix_into(mix, audio_written)
                np.clip(mix, -1.0, 1.0, out=mix)
                sound = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(mix.T), format="fltp", layout="stereo"
                )
                sound.sample_rate = AUDIO_RATE
                sound.pts = audio_written
                sound.time_base = fractions.Fraction(1, AUDIO_RATE)
                for packet in audio.encode(sound):
                    container.mux(packet)
                audio_written += AUDIO_CHUNK
            if sys.stderr.isatty() and index % fps == 0:
                print(f"\rcomposing {t:.0f}/{duration:.0f} s", end="", file=sys.stderr)
        for packet in video.encode(None):
            container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    return total_frames / fps
