"""Depacketizing: an RTP frame's payloads into one encoded frame, and its container."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import vp8_depayload

# Remuxed, never transcoded: the container each codec goes into, and its PyAV encoder
# name (only used to describe the stream; no frame is encoded).
CONTAINERS: dict[str, tuple[str, str, str]] = {
    "audio/opus": ("webm", "webm", "libopus"),
    "video/vp8": ("webm", "webm", "libvpx"),
    "video/h264": ("matroska", "mkv", "h264"),
}


def recordable(mime_type: str) -> bool:
    return mime_type.lower() in CONTAINERS


@dataclass(frozen=True)
class Frame:
    data: bytes
    keyframe: bool
    # Video only, from a keyframe's header (VP8) when it has one.
    size: tuple[int, int] | None = None


def depacketize(mime_type: str, payloads: list[bytes]) -> Frame | None:
    """One frame from the payloads of its packets, in order; None if unusable."""
    mime = mime_type.lower()
    if mime == "audio/opus":
        return Frame(payloads[0], True)
    if mime == "video/vp8":
        data = b"".join(vp8_depayload(p) for p in payloads)
        if len(data) < 3:
            return None
        keyframe = not data[0] & 1
        size = None
        if keyframe and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
            size = (
                int.from_bytes(data[6:8], "little") & 0x3FFF,
                int.from_bytes(data[8:10], "little") & 0x3FFF,
            )
        return Frame(data, keyframe, size)
    if mime == "video/h264":
        data = b"".join(h264_depayload(p) for p in payloads)
        return Frame(data, _h264_has_idr(data)) if data else None
    return None


def _h264_has_idr(annexb: bytes) -> bool:
    """An IDR slice with its parameter sets (SPS 7, PPS 8): where a decoder can start."""
    types = set()
    start = annexb.find(b"\x00\x00\x01")
    while start != -1 and start + 3 < len(annexb):
        types.add(annexb[start + 3] & 0x1F)
        start = annexb.find(b"\x00\x00\x01", start + 3)
    return {5, 7, 8} <= types
