"""The recorder process: ``python -m sfu.recorder.recorder_process`` (started by the signalling process).

Like a media worker it serves a channel on the inherited socket ``--fd`` and
exits when the channel closes (every file closed first). Decoding-free
remuxing runs here, on its own event loop: a slow disk delays no forwarding.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..channel import Channel
from ..errors import InvalidRequestError, InvalidStateError, NotFoundError
from ..logs import configure_logging
from ..recording.messages import (
    RecorderEvent,
    RecorderMethod,
    RoomConnectRequest,
    RoomStarted,
    RoomStartRequest,
    TrackPauseRequest,
    TrackRemoveRequest,
    TrackRequest,
)
from .room_recorder import RoomRecorder

logger = logging.getLogger(__name__)


class Recorder:
    """Every room recording of this process, by room id (a request's target)."""

    def __init__(self, channel: Channel, free_space_floor: int, listen_ip: str) -> None:
        self._channel = channel
        self._free_space_floor = free_space_floor
        self._listen_ip = listen_ip
        self.rooms: dict[str, RoomRecorder] = {}

    async def handle_request(self, method: str, target: str, data: dict[str, Any]) -> Any:
        if method == RecorderMethod.START:
            return {"pid": os.getpid()}
        if method == RecorderMethod.ROOM_START:
            start: RoomStartRequest = data  # type: ignore[assignment]
            return await self._start_room(start)
        room = self.rooms.get(target)
        if room is None:
            raise NotFoundError(f"room {target!r} is not being recorded")
        if method == RecorderMethod.ROOM_CONNECT:
            connect: RoomConnectRequest = data  # type: ignore[assignment]
            room.connect(connect["ip"], connect["port"])
        elif method == RecorderMethod.ROOM_ADD_TRACK:
            track: TrackRequest = data  # type: ignore[assignment]
            room.add_track(track)
        elif method == RecorderMethod.ROOM_PAUSE_TRACK:
            pause: TrackPauseRequest = data  # type: ignore[assignment]
            room.pause_track(pause["trackId"], bool(pause["paused"]))
        elif method == RecorderMethod.ROOM_REMOVE_TRACK:
            remove: TrackRemoveRequest = data  # type: ignore[assignment]
            room.remove_track(remove["trackId"])
        elif method == RecorderMethod.ROOM_STOP:
            room.stop()
            del self.rooms[target]
        else:
            raise InvalidRequestError(f"unknown recorder method {method!r}")
        return None

    async def _start_room(self, request: RoomStartRequest) -> RoomStarted:
        room_id = request["roomId"]
        if room_id in self.rooms:
            raise InvalidStateError(f"room {room_id!r} is already being recorded")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in room_id)[:64]
        directory = Path(request["directory"]) / f"{safe}-{stamp}"
        suffix = 1
        while directory.exists():
            suffix += 1
            directory = Path(request["directory"]) / f"{safe}-{stamp}-{suffix}"

        def disk_full() -> None:
            self.rooms.pop(room_id, None)
            self._channel.notify(room_id, RecorderEvent.DISK_FULL, {"directory": str(directory)})

        room = RoomRecorder(room_id, directory, self._free_space_floor, disk_full)
        ip, port = await room.start(self._listen_ip)
        self.rooms[room_id] = room
        return RoomStarted(ip=ip, port=port, directory=str(directory))

    def close(self) -> None:
        for room in list(self.rooms.values()):
            room.stop("recorder-closed")
        self.rooms.clear()


async def serve(sock: socket.socket, free_space_floor: int, listen_ip: str) -> None:
    channel = await Channel.over_socket(sock)
    recorder = Recorder(channel, free_space_floor, listen_ip)
    try:
        await channel.run(recorder.handle_request)
    finally:
        recorder.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sfu-recorder")
    parser.add_argument("--fd", type=int, required=True, help="the channel's socket")
    parser.add_argument("--free-space-floor", type=int, default=0, help="bytes")
    parser.add_argument("--listen-ip", default="127.0.0.1")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    # Ctrl-C reaches the whole group: the signalling process stops us through the channel.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    asyncio.run(serve(sock, args.free_space_floor, args.listen_ip))
    return 0


if __name__ == "__main__":
    sys.exit(main())
