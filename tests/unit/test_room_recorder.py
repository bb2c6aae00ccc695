"""RoomRecorder: the free-space floor stops a recording cleanly; bad datagrams lose nothing."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from sfu.recorder.room_recorder import MANIFEST, RoomRecorder
from sfu.recording.messages import TrackRequest

TRACK = TrackRequest(
    trackId="t1",
    peerId="p1",
    kind="audio",
    mimeType="audio/opus",
    clockRate=48000,
    channels=2,
    payloadType=100,
    ssrc=1234,
    rtxSsrc=None,
    rtxPayloadType=None,
)


async def test_under_the_free_space_floor_the_recording_stops_with_its_manifest(
    tmp_path: Path,
) -> None:
    full = asyncio.Event()
    room = RoomRecorder("r1", tmp_path / "r1", 2**62, full.set)  # more than any disk has
    await room.start()
    room.add_track(TRACK)
    await asyncio.wait_for(full.wait(), 5)
    assert room.closed
    manifest = json.loads((tmp_path / "r1" / MANIFEST).read_text())
    assert manifest["stopped"]
    assert manifest["stopReason"] == "disk-full"
    assert [t["ended"] for t in manifest["tracks"]] == [True]


async def test_garbage_and_strangers_are_ignored_and_the_track_goes_on(tmp_path: Path) -> None:
    room = RoomRecorder("r2", tmp_path / "r2", 0, lambda: None)
    ip, port = await room.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        room.connect(*sender.getsockname())
        room.add_track(TRACK)
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        good = bytes([0x80, 100, 0, 1]) + (960).to_bytes(4, "big") + (1234).to_bytes(4, "big")
        with stranger:
            stranger.sendto(good + b"\xfc", (ip, port))  # not the connected address
        for datagram in (b"\x80", bytes(40), b"\x80\xc8" + bytes(3), good[:8] + bytes(4)):
            sender.sendto(datagram, (ip, port))
        sender.sendto(good + b"\xfc\xff\xfe", (ip, port))
        track = room.tracks["t1"]
        for _ in range(100):
            if track.stats.frames:
                break
            await asyncio.sleep(0.02)
    assert track.stats.packets == 1
    assert track.stats.frames == 1
    room.stop()
