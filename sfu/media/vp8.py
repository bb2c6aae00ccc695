"""The VP8 RTP payload descriptor (RFC 7741 section 4.2), as a simulcast consumer
reads and rewrites it: picture id, TL0PICIDX and the temporal layer id."""

from __future__ import annotations

from typing import NamedTuple


class Vp8Descriptor(NamedTuple):
    """Offsets into the buffer (-1: absent) and the values a consumer needs."""

    frame_start: bool  # S bit and partition 0: the first packet of a frame
    picture_id_at: int
    picture_id_bits: int  # 7 or 15 (0: no picture id)
    picture_id: int
    tl0_at: int
    tl0: int
    tid: int  # -1: no temporal layer id


def parse_vp8_descriptor(buf: bytes | bytearray, start: int) -> Vp8Descriptor | None:
    """The descriptor of the VP8 payload at ``buf[start:]``, or None if truncated."""
    try:
        return _parse(buf, start)
    except IndexError:
        return None


def _parse(buf: bytes | bytearray, start: int) -> Vp8Descriptor:
    b0 = buf[start]
    frame_start = bool(b0 & 0x10) and b0 & 0x07 == 0
    if not b0 & 0x80:
        return Vp8Descriptor(frame_start, -1, 0, 0, -1, 0, -1)
    x = buf[start + 1]
    at = start + 2
    picture_id_at, bits, picture_id = -1, 0, 0
    if x & 0x80:
        picture_id_at = at
        if buf[at] & 0x80:
            bits, picture_id = 15, ((buf[at] & 0x7F) << 8) | buf[at + 1]
            at += 2
        else:
            bits, picture_id = 7, buf[at]
            at += 1
    tl0_at, tl0 = -1, 0
    if x & 0x40:
        tl0_at, tl0 = at, buf[at]
        at += 1
    tid = buf[at] >> 6 if x & 0x20 else -1
    return Vp8Descriptor(frame_start, picture_id_at, bits, picture_id, tl0_at, tl0, tid)


def write_picture_id(buf: bytearray, descriptor: Vp8Descriptor, picture_id: int) -> None:
    at = descriptor.picture_id_at
    if descriptor.picture_id_bits == 15:
        buf[at] = 0x80 | ((picture_id >> 8) & 0x7F)
        buf[at + 1] = picture_id & 0xFF
    else:
        buf[at] = picture_id & 0x7F


def payload_start(b0: int, tail: bytes) -> int:
    """Where the payload begins in a packet's tail (CSRCs, extension block, payload)."""
    at = 4 * (b0 & 0x0F)
    if b0 & 0x10 and at + 4 <= len(tail):
        at += 4 + 4 * ((tail[at + 2] << 8) | tail[at + 3])
    return at
