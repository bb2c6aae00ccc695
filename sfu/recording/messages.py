"""The recorder channel's methods and payloads, for both ends (as ``sfu.channel.messages``)."""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict


class RecorderMethod(StrEnum):
    START = "recorder.start"
    ROOM_START = "recording.start"
    ROOM_CONNECT = "recording.connect"
    ROOM_ADD_TRACK = "recording.addTrack"
    ROOM_PAUSE_TRACK = "recording.pauseTrack"
    ROOM_REMOVE_TRACK = "recording.removeTrack"
    ROOM_STOP = "recording.stop"


class RecorderEvent(StrEnum):
    # The free space fell under the floor: the room's recording stopped.
    DISK_FULL = "diskfull"


class RoomStartRequest(TypedDict):
    roomId: str
    directory: str


class RoomStarted(TypedDict):
    ip: str
    port: int
    directory: str


class RoomConnectRequest(TypedDict):
    ip: str
    port: int


class TrackRequest(TypedDict):
    trackId: str
    peerId: str
    kind: str
    mimeType: str
    clockRate: int
    channels: int
    payloadType: int
    ssrc: int
    rtxSsrc: int | None
    rtxPayloadType: int | None


class TrackPauseRequest(TypedDict):
    trackId: str
    paused: bool


class TrackRemoveRequest(TypedDict):
    trackId: str
