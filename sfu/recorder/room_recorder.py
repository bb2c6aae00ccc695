"""RoomRecorder: one room's recording: its UDP socket, its tracks, and ``room.json``.

The socket is the far end of a plain RTP transport on the room's router: the
consumers' packets come in, and NACKs and keyframe requests go back from the
same address (the transport only accepts the address it was connected to).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiortc.rtp import (
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
)

from ..errors import InvalidRequestError, NotFoundError
from ..recording.messages import TrackRequest
from .depacketizer import recordable
from .track_writer import TrackWriter

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.02
DISK_CHECK_SECONDS = 2.0
# room.json is rewritten this often while recording (its counts, after a crash).
MANIFEST_SECONDS = 1.0
MANIFEST = "room.json"
_NTP_TO_UNIX = 2208988800


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, recorder: RoomRecorder) -> None:
        self._recorder = recorder

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._recorder.datagram_received(data, (str(addr[0]), int(addr[1])))


class RoomRecorder:
    def __init__(
        self, room_id: str, directory: Path, free_space_floor: int, on_disk_full: Callable[[], None]
    ) -> None:
        self.room_id = room_id
        self.directory = directory
        self._free_space_floor = free_space_floor
        self._on_disk_full = on_disk_full
        self.started_at = time.time()
        self.tracks: dict[str, TrackWriter] = {}
        self.ended: list[TrackWriter] = []
        self._by_ssrc: dict[int, tuple[TrackWriter, int | None]] = {}  # ssrc -> (track, rtx of pt)
        self._transport: asyncio.DatagramTransport | None = None
        self._remote: tuple[str, int] | None = None
        self._ssrc = random.getrandbits(32) or 1  # ours, in RTCP feedback
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self.stop_reason: str | None = None

    async def start(self, listen_ip: str = "127.0.0.1") -> tuple[str, int]:
        self.directory.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self), local_addr=(listen_ip, 0)
        )
        self._transport = transport
        self._tasks.append(asyncio.create_task(self._ticks()))
        self.write_manifest()
        ip, port = transport.get_extra_info("sockname")[:2]
        return str(ip), int(port)

    def connect(self, ip: str, port: int) -> None:
        self._remote = (ip, port)

    # ---- tracks ----------------------------------------------------------------------

    def add_track(self, request: TrackRequest) -> None:
        if request["trackId"] in self.tracks:
            raise InvalidRequestError(f"track {request['trackId']} is already recorded")
        if not recordable(request["mimeType"]):
            raise InvalidRequestError(f"{request['mimeType']} cannot be recorded yet")
        track = TrackWriter(
            request,
            self.directory,
            clock=time.time,
            send_nack=self._send_nack,
            send_pli=self._send_pli,
        )
        self.tracks[track.id] = track
        self._by_ssrc[request["ssrc"]] = (track, None)
        if request["rtxSsrc"] is not None:
            self._by_ssrc[request["rtxSsrc"]] = (track, request["payloadType"])
        self.write_manifest()

    def _track(self, track_id: str) -> TrackWriter:
        track = self.tracks.get(track_id)
        if track is None:
            raise NotFoundError(f"track {track_id} is not recorded")
        return track

    def pause_track(self, track_id: str, paused: bool) -> None:
        self._track(track_id).set_paused(paused, time.time() - self.started_at)
        self.write_manifest()

    def remove_track(self, track_id: str) -> None:
        track = self._track(track_id)
        track.close()
        del self.tracks[track_id]
        self.ended.append(track)
        self._by_ssrc = {s: v for s, v in self._by_ssrc.items() if v[0] is not track}
        self.write_manifest()

    # ---- packets -----------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.closed or addr != self._remote or len(data) < 12:
            return
        try:
            if 191 < data[1] < 224:
                self._receive_rtcp(data)
                return
            packet = RtpPacket.parse(data)
            found = self._by_ssrc.get(packet.ssrc)
            if found is None:
                return
            track, rtx_of = found
            if rtx_of is not None:
                if len(packet.payload) < 2:
                    return
                sequence = int.from_bytes(packet.payload[:2], "big")
                track.receive(
                    sequence, packet.timestamp, bool(packet.marker), packet.payload[2:], True
                )
            else:
                track.receive(
                    packet.sequence_number,
                    packet.timestamp,
                    bool(packet.marker),
                    packet.payload,
                    False,
                )
        except Exception:  # a bad datagram loses that datagram only
            logger.debug("room %s: unreadable datagram", self.room_id, exc_info=True)

    def _receive_rtcp(self, data: bytes) -> None:
        for report in RtcpPacket.parse(data):
            if isinstance(report, RtcpSrPacket):
                found = self._by_ssrc.get(report.ssrc)
                if found is not None and found[1] is None:
                    info = report.sender_info
                    unix = info.ntp_timestamp / (1 << 32) - _NTP_TO_UNIX
                    had = found[0].synced_by_reports
                    found[0].sender_report_received(unix, info.rtp_timestamp)
                    if not had:
                        self.write_manifest()

    def _send(self, packet: bytes) -> None:
        if self._transport is not None and self._remote is not None and not self.closed:
            self._transport.sendto(packet, self._remote)

    def _send_nack(self, media_ssrc: int, sequences: list[int]) -> None:
        nack = RtcpRtpfbPacket(
            fmt=1, ssrc=self._ssrc, media_ssrc=media_ssrc, lost=sorted(sequences)
        )
        self._send(bytes(nack))

    def _send_pli(self, media_ssrc: int) -> None:
        self._send(bytes(RtcpPsfbPacket(fmt=1, ssrc=self._ssrc, media_ssrc=media_ssrc)))

    async def _ticks(self) -> None:
        last_disk_check = last_manifest = 0.0
        while not self.closed:
            await asyncio.sleep(TICK_SECONDS)
            for track in list(self.tracks.values()):
                try:
                    track.tick()
                except Exception:
                    logger.exception("room %s: track %s failed; it stops", self.room_id, track.id)
                    self.remove_track(track.id)
            now = time.monotonic()
            if now - last_manifest >= MANIFEST_SECONDS:
                last_manifest = now
                self.write_manifest()
            if now - last_disk_check >= DISK_CHECK_SECONDS:
                last_disk_check = now
                free = shutil.disk_usage(self.directory).free
                if free < self._free_space_floor:
                    logger.error(
                        "room %s: %d MB free under %s, under the floor of %d MB: recording stops",
                        self.room_id,
                        free // 2**20,
                        self.directory,
                        self._free_space_floor // 2**20,
                    )
                    self.stop("disk-full")
                    self._on_disk_full()

    # ---- the manifest ----------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        every = [*self.ended, *self.tracks.values()]
        starts = [t for t in (track.start_time() for track in every) if t is not None]
        # The manifest's clock: seconds from the earliest track's first frame.
        origin = min(starts) if starts else self.started_at
        tracks = []
        for track in every:
            start = track.start_time()
            tracks.append(
                {
                    "id": track.id,
                    "peerId": track.request["peerId"],
                    "kind": track.kind,
                    "codec": track.mime_type,
                    "clockRate": track.clock_rate,
                    "file": track.path.name if track.first_timestamp is not None else None,
                    "startOffset": None if start is None else round(start - origin, 4),
                    "syncedBySenderReport": track.synced_by_reports,
                    "senderReports": len(track.report_origins),
                    "senderReportSpread": round(track.report_spread(), 4),
                    # The same instant by this process's clock (arrival of the first frame).
                    "firstArrivalOffset": None
                    if track.first_arrival is None
                    else round(track.first_arrival - origin, 4),
                    "ended": track.closed,
                    "frames": track.stats.frames,
                    "packets": track.stats.packets,
                    "retransmitted": track.stats.retransmitted,
                    "lost": track.stats.lost,
                    "keyframeRequests": track.stats.keyframe_requests,
                    "pauses": track.stats.pauses,
                    "layerChanges": [],
                }
            )
        return {
            "roomId": self.room_id,
            "startedAt": origin,
            "recordingStartedAt": self.started_at,
            "stopped": self.closed,
            "stopReason": self.stop_reason,
            "tracks": tracks,
        }

    def write_manifest(self) -> None:
        path = self.directory / MANIFEST
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.manifest(), indent=2))
        os.replace(partial, path)  # whole or not at all, even after a crash

    def stop(self, reason: str = "stopped") -> None:
        if self.closed:
            return
        for track_id in list(self.tracks):
            self.remove_track(track_id)
        self.closed = True
        self.stop_reason = reason
        for task in self._tasks:
            task.cancel()
        if self._transport is not None:
            self._transport.close()
        self.write_manifest()
        logger.info("room %s: recording stopped (%s) in %s", self.room_id, reason, self.directory)
