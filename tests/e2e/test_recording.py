"""End to end: rooms recorded by the recorder process, from real bots, into real files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from sfu.client import PatternVideoTrack, SfuClient, ToneAudioTrack

from ..conftest import LOOPBACK, ServerProcess, start_server, stop_server
from .helpers import dominant_frequency, wait_until

TONES = {"alice": 330.0, "bob": 550.0}
SIZE = (320, 240)
FPS = 15


def recording_overrides(directory: Path) -> dict[str, dict[str, Any]]:
    return {"recording": {"directory": str(directory), "auto": True, "free_space_floor_mb": 0}}


def manifest(directory: Path) -> dict[str, Any] | None:
    found = list(directory.glob("*/room.json"))
    return json.loads(found[0].read_text()) if found else None


def child_pids(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class Bot:
    def __init__(self, server: ServerProcess, room: str, peer_id: str) -> None:
        self.client = SfuClient(server.ws_url, room, peer_id, consume=False, ice_addresses=LOOPBACK)
        self.audio = ToneAudioTrack(frequency=TONES[peer_id])
        self.video = PatternVideoTrack(*SIZE, fps=FPS)
        self.audio_id = self.video_id = ""

    async def start(self) -> None:
        await self.client.join()
        self.audio_id = await self.client.produce(self.audio)
        self.video_id = await self.client.produce(self.video)


def decode(
    path: Path, stream_kind: str | None = None
) -> tuple[list[av.VideoFrame], np.ndarray | None, float]:
    """Every frame of a file's first stream (of ``stream_kind``): video frames, or audio
    as mono float samples; and the span of its timestamps in seconds."""
    frames: list[av.VideoFrame] = []
    chunks: list[np.ndarray] = []
    times: list[float] = []
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams if stream_kind is None or s.type == stream_kind)
        try:
            for frame in container.decode(stream):
                if not isinstance(frame, av.VideoFrame | av.AudioFrame):
                    continue
                if frame.pts is not None and frame.time_base is not None:
                    times.append(float(frame.pts * frame.time_base))
                if isinstance(frame, av.VideoFrame):
                    frames.append(frame)
                elif isinstance(frame, av.AudioFrame):
                    samples = frame.to_ndarray().astype(np.float64)
                    chunks.append(
                        samples[0]
                        if samples.ndim == 2 and samples.shape[0] > 1
                        else samples.reshape(-1)
                    )
        except av.error.InvalidDataError:
            pass  # a file cut by a crash ends in a partial cluster
    span = max(times) - min(times) if times else 0.0
    return frames, (np.concatenate(chunks) if chunks else None), span


def check_tracks(data: dict[str, Any], directory: Path, ended_at: float, slack: float) -> None:
    """Each track decodes from its start to within ``slack`` seconds of ``ended_at`` (unix)."""
    tracks = data["tracks"]
    assert sorted((t["peerId"], t["kind"]) for t in tracks) == [
        ("alice", "audio"),
        ("alice", "video"),
        ("bob", "audio"),
        ("bob", "video"),
    ], tracks
    for track in tracks:
        path = directory / track["file"]
        assert path.suffix == ".webm"
        frames, samples, span = decode(path)
        recorded = ended_at - (data["startedAt"] + track["startOffset"])
        assert span >= recorded - slack, f"{path.name} spans {span:.2f} s of {recorded:.2f} s"
        if track["kind"] == "video":
            assert track["codec"].lower() == "video/vp8"
            assert (frames[0].width, frames[0].height) == SIZE
            expected = span * FPS + 1
            assert len(frames) >= 0.9 * expected, (
                f"{path.name}: {len(frames)} frames decoded over {span:.2f} s at {FPS} fps"
            )
        else:
            assert track["codec"].lower() == "audio/opus"
            assert samples is not None
            last_second = samples[-48000:]
            assert float(np.sqrt((last_second**2).mean())) > 0.05
            frequency = dominant_frequency(last_second)
            assert abs(frequency - TONES[track["peerId"]]) < 10, (path.name, frequency)


@dataclass
class RecordedRoom:
    server: ServerProcess
    directory: Path  # the recordings directory
    bots: list[Bot] = field(default_factory=list)


@contextlib.asynccontextmanager
async def recorded_room(
    tmp_path: Path,
    seconds: float,
    *,
    workers: dict[str, int] | None = None,
    extra_toml: str = "",
) -> AsyncIterator[RecordedRoom]:
    """A server recording every room, and two bots recorded for ``seconds`` once all four
    tracks have frames written. On leaving, the bots close and the server gets SIGTERM
    (the recording ends and its files are closed), unless the test killed it."""
    directory = tmp_path / "recordings"
    overrides = recording_overrides(directory)
    if workers is not None:
        overrides["workers"] = dict(workers)
    room = RecordedRoom(start_server(tmp_path, overrides, extra_toml=extra_toml), directory)
    try:
        for peer in TONES:
            room.bots.append(Bot(room.server, "recorded", peer))
            await room.bots[-1].start()
        assert await wait_until(
            lambda: (
                sum(1 for t in (manifest(directory) or {}).get("tracks", []) if t["frames"]) == 4
            ),
            timeout=30,
        ), manifest(directory)
        await asyncio.sleep(seconds)  # the length of the recording
        yield room
    finally:
        for bot in room.bots:
            await bot.client.close()
        stop_server(room.server)


async def test_two_bots_recorded_for_ten_seconds_then_composed(tmp_path: Path) -> None:
    async with recorded_room(tmp_path, 10.0) as room:
        server, directory = room.server, room.directory
        sent = {bot.client.peer_id: bot.video.frame_index for bot in room.bots}
        ended_at = time.time()
    data = manifest(directory)
    assert data is not None
    assert data["stopped"], data
    room_directory = next(directory.iterdir())
    check_tracks(data, room_directory, ended_at, slack=0.5)
    for track in data["tracks"]:
        if track["kind"] == "video":
            frames, _, _ = decode(room_directory / track["file"])
            # Video was recorded from the first keyframe on: most of what was sent.
            assert len(frames) >= 0.9 * (sent[track["peerId"]] - 2 * FPS), (len(frames), sent)
    # One clock for every track: each peer's audio and video start offsets agree with
    # when their first frames arrived, within 50 ms (the senders' reports place them).
    for peer in TONES:
        audio, video = (
            next(t for t in data["tracks"] if t["peerId"] == peer and t["kind"] == kind)
            for kind in ("audio", "video")
        )
        assert audio["syncedBySenderReport"], audio
        assert video["syncedBySenderReport"]
        by_reports = audio["startOffset"] - video["startOffset"]
        by_arrival = audio["firstArrivalOffset"] - video["firstArrivalOffset"]
        assert abs(by_reports - by_arrival) < 0.05, (peer, by_reports, by_arrival, audio, video)
    assert "Traceback" not in server.log(), server.log()

    check_compose(
        room_directory / "room.json", tmp_path / "meeting.mp4", ended_at - data["startedAt"]
    )


def check_compose(manifest_path: Path, output: Path, room_seconds: float) -> None:
    """sfu compose: one video of the grid's size, as long as the room, both tones audible."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sfu",
            "compose",
            str(manifest_path),
            "-o",
            str(output),
            "--size",
            "640x360",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    frames, _, span = decode(output, stream_kind="video")
    assert (frames[0].width, frames[0].height) == (640, 360)
    assert abs(span + 1 / FPS - room_seconds) < 0.5, (span, room_seconds)
    _, mixed, _ = decode(output, stream_kind="audio")
    assert mixed is not None
    spectrum = np.abs(np.fft.rfft(mixed[-4 * 48000 :] * np.hanning(4 * 48000)))
    frequencies = np.fft.rfftfreq(4 * 48000, 1 / 48000)
    floor = float(np.median(spectrum))
    for tone in TONES.values():
        near = spectrum[np.abs(frequencies - tone) < 3]
        assert float(near.max()) > 100 * floor, (tone, float(near.max()), floor)


async def test_recording_survives_kill_9_of_the_server(tmp_path: Path) -> None:
    async with recorded_room(tmp_path, 5.0) as room:
        server, directory = room.server, room.directory
        # kill -9 of the whole server: signalling, workers and recorder alike.
        children = child_pids(server.pid)
        assert len(children) == 3, children  # two media workers and the recorder
        server.process.send_signal(signal.SIGKILL)
        ended_at = time.time()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        server.process.wait(10)
    data = manifest(directory)
    assert data is not None
    assert not data["stopped"]
    room_directory = next(directory.iterdir())
    # Everything but the last second (the cluster being written) decodes.
    check_tracks(data, room_directory, ended_at, slack=1.5)


async def test_a_pause_is_a_gap_and_a_closed_producer_ends_its_file(tmp_path: Path) -> None:
    async with recorded_room(tmp_path, 2.0) as room:
        directory = room.directory
        alice, bob = room.bots
        audio_id, video_id = alice.audio_id, bob.video_id
        await alice.client.pause_producer(audio_id)
        await bob.client.close_producer(video_id)

        def track(producer_id: str) -> dict[str, Any]:
            return next(t for t in (manifest(directory) or {})["tracks"] if t["id"] == producer_id)

        assert await wait_until(lambda: track(audio_id)["pauses"] and track(video_id)["ended"], 10)
        paused_at = time.monotonic()
        await asyncio.sleep(2.0)  # the pause's length
        await alice.client.resume_producer(audio_id)
        assert await wait_until(lambda: track(audio_id)["pauses"][0]["resumedAt"] is not None, 10)
        paused_for = time.monotonic() - paused_at
        await asyncio.sleep(2.0)
        ended_at = time.time()
    data = manifest(directory)
    assert data is not None
    room_directory = next(directory.iterdir())
    audio = next(t for t in data["tracks"] if t["id"] == audio_id)
    pause = audio["pauses"][0]
    assert abs(pause["resumedAt"] - pause["at"] - paused_for) < 0.3, (pause, paused_for)
    # The audio file keeps the pause as a gap in its timestamps, and its length.
    times = []
    with av.open(str(room_directory / audio["file"])) as container:
        for packet in container.demux(container.streams[0]):
            if packet.pts is not None and packet.time_base is not None:
                times.append(float(packet.pts * packet.time_base))
    gaps = np.diff(times)
    assert abs(float(gaps.max()) - paused_for) < 0.3, (float(gaps.max()), paused_for)
    assert float(np.sort(gaps)[-2]) < 0.1  # one gap only
    recorded = ended_at - (data["startedAt"] + audio["startOffset"])
    assert abs(times[-1] - recorded) < 0.5, (times[-1], recorded)
    # Bob's closed video track: ended, its file whole and decodable.
    video = next(t for t in data["tracks"] if t["id"] == video_id)
    assert video["ended"]
    frames, _, span = decode(room_directory / video["file"])
    assert span > 1.5
    assert len(frames) >= 0.9 * (span * FPS + 1)


def recorder_pid(server: ServerProcess) -> int:
    return next(
        pid
        for pid in child_pids(server.pid)
        if b"sfu.recorder" in Path(f"/proc/{pid}/cmdline").read_bytes()
    )


def recorder_port(server: ServerProcess) -> int:
    """The UDP port of the recorder's room socket (its only one), from ``ss``."""
    recorder = recorder_pid(server)
    listing = subprocess.run(
        ["ss", "-H", "-u", "-a", "-n", "-p"], capture_output=True, text=True, check=True
    ).stdout
    ports = [
        int(line.split()[3].rsplit(":", 1)[1])
        for line in listing.splitlines()
        if f"pid={recorder}," in line
    ]
    assert len(ports) == 1, listing
    return ports[0]


def random_loss(port: int, on: bool, probability: float = 0.05) -> None:
    """Drop ``probability`` of the UDP datagrams to ``port`` (iptables, this namespace only)."""
    rule = ["-p", "udp", "--dport", str(port), "-m", "statistic", "--mode", "random"]
    rule += ["--probability", str(probability), "-j", "DROP"]
    subprocess.run(
        ["iptables", "-I" if on else "-D", "OUTPUT", *rule],
        check=on,
        capture_output=True,
        timeout=10,
    )


@pytest.mark.skipif(shutil.which("iptables") is None, reason="iptables is not installed")
async def test_five_percent_loss_to_the_recorder_is_repaired_before_writing(
    tmp_path: Path,
) -> None:
    port = 0
    async with recorded_room(tmp_path, 0.0) as room:
        server, directory = room.server, room.directory
        try:
            port = recorder_port(server)
            random_loss(port, True)
            await asyncio.sleep(8.0)  # the recording under loss
        finally:
            if port:
                random_loss(port, False)
    data = manifest(directory)
    assert data is not None
    room_directory = next(directory.iterdir())
    for track in data["tracks"]:
        if track["kind"] != "video":
            continue
        # Lost packets were asked for again and came back as RTX before the frame was written.
        assert track["retransmitted"] > 0.02 * track["packets"], track
        assert track["lost"] <= 0.01 * track["packets"], track
        frames, _, span = decode(room_directory / track["file"])
        assert len(frames) >= 0.9 * (span * FPS + 1), (track["file"], len(frames), span)


async def test_a_dead_recorder_is_replaced_and_the_room_recorded_again(tmp_path: Path) -> None:
    async with recorded_room(tmp_path, 3.0) as room:
        server, directory = room.server, room.directory
        first = next(directory.iterdir())
        os.kill(recorder_pid(server), signal.SIGKILL)
        killed_at = time.time()

        def second_recording() -> dict[str, Any] | None:
            others = [d for d in directory.iterdir() if d != first]
            if not others or not (others[0] / "room.json").exists():
                return None
            data: dict[str, Any] = json.loads((others[0] / "room.json").read_text())
            return data

        assert await wait_until(
            lambda: (
                sum(1 for t in (second_recording() or {}).get("tracks", []) if t["frames"]) == 4
            ),
            timeout=30,
        ), second_recording()
        await asyncio.sleep(3.0)
        ended_at = time.time()
    # The first recording decodes up to about the kill; the second is whole.
    first_data = json.loads((first / "room.json").read_text())
    check_tracks(first_data, first, killed_at, slack=1.5)
    second = next(d for d in directory.iterdir() if d != first)
    second_data = json.loads((second / "room.json").read_text())
    assert second_data["stopped"]
    check_tracks(second_data, second, ended_at, slack=0.5)
    assert "recording again" in server.log()


H264_ONLY = """
[[router.media_codecs]]
kind = "audio"
mime_type = "audio/opus"
clock_rate = 48000
channels = 2

[[router.media_codecs]]
kind = "video"
mime_type = "video/H264"
clock_rate = 90000
parameters = { "packetization-mode" = 1, "profile-level-id" = "42e01f", "level-asymmetry-allowed" = 1 }
"""


async def test_h264_is_remuxed_into_matroska(tmp_path: Path) -> None:
    async with recorded_room(tmp_path, 5.0, extra_toml=H264_ONLY) as room:
        directory = room.directory
        ended_at = time.time()
    data = manifest(directory)
    assert data is not None
    room_directory = next(directory.iterdir())
    for track in data["tracks"]:
        if track["kind"] == "video":
            assert track["codec"].lower() == "video/h264"
            assert track["file"].endswith(".mkv")
            frames, _, span = decode(room_directory / track["file"])
            recorded = ended_at - (data["startedAt"] + track["startOffset"])
            assert span >= recorded - 0.5, (span, recorded)
            assert (frames[0].width, frames[0].height) == SIZE
            assert len(frames) >= 0.9 * (span * FPS + 1), (len(frames), span)


async def test_a_room_on_two_workers_is_recorded_whole(tmp_path: Path) -> None:
    async with recorded_room(
        tmp_path, 3.0, workers={"count": 2, "max_peers_per_router": 1}
    ) as room:
        server, directory = room.server, room.directory
        workers_used = sum(1 for w in server.health()["workers"] if w.get("routers"))
        ended_at = time.time()
    assert workers_used == 2
    data = manifest(directory)
    assert data is not None
    check_tracks(data, next(directory.iterdir()), ended_at, slack=0.5)
