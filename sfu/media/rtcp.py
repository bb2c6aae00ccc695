"""A small raw-bytes RTCP codec for the media path.

Only ``struct`` is used: no aiortc packet objects. Builders return wire bytes
(before SRTCP protection); :func:`parse_compound` walks a whole (already
unprotected) compound packet and returns the messages the SFU acts on:

- SR (200) and RR (201), with their report blocks (RFC 3550);
- BYE (203);
- RTPFB (205) fmt 1, generic NACK (RFC 4585);
- PSFB (206) fmt 1 PLI, fmt 4 FIR (RFC 5104), fmt 15 REMB
  (draft-alvestrand-rmcat-remb).

Everything else (SDES, APP, XR, transport-cc and other feedback formats) is
skipped, but its common header is still checked. On malformed input the parser
raises :class:`RtcpError` and nothing else.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeAlias

__all__ = [
    "MAX_AUDIO_INTERVAL",
    "MAX_REPORT_BLOCKS",
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_PSFB",
    "RTCP_RR",
    "RTCP_RTPFB",
    "RTCP_SDES",
    "RTCP_SR",
    "RTCP_XR",
    "Bye",
    "Fir",
    "Nack",
    "Pli",
    "ReceiverReport",
    "Remb",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "SenderReport",
    "build_fir",
    "build_nack",
    "build_pli",
    "build_remb",
    "build_rr",
    "build_sdes",
    "build_sdes_cname",
    "build_sr",
    "is_rtcp",
    "ntp_middle32",
    "ntp_now",
    "ntp_to_seconds",
    "parse_compound",
    "report_due",
    "seconds_to_ntp",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206
RTCP_XR = 207

RTPFB_NACK = 1
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_AFB = 15  # application layer feedback; REMB is one of them

SDES_CNAME = 1

#: The 5-bit count field limits an SR/RR to 31 report blocks.
MAX_REPORT_BLOCKS = 31

# How often a stream reports at most, as mediasoup (RTC::RTCP::MaxAudioIntervalMs,
# MaxVideoIntervalMs): audio every 5 s, video every transport tick (about 1 s).
# An idle voice-channel listener is then mostly its audio stream's RTCP.
MAX_AUDIO_INTERVAL = 5.0


def report_due(kind: str, last_report: float, now: float) -> bool:
    """Whether a stream of ``kind`` that last reported at ``last_report`` reports at ``now``.

    The 1.15 slack is mediasoup's: a tick a little early still reports.
    """
    return kind != "audio" or (now - last_report) * 1.15 >= MAX_AUDIO_INTERVAL


#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_OFFSET = 2_208_988_800

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_REMB_MAX_MANTISSA = 0x3FFFF  # 18 bits
_REMB_MAX_EXPONENT = 0x3F  # 6 bits

# Precompiled structs (network byte order).
_HDR = struct.Struct("!BBH")  # V/P/count, PT, length in 32-bit words minus one
_U32S = struct.Struct("!I")
_HDR_SSRC = struct.Struct("!BBHI")
_HDR_2SSRC = struct.Struct("!BBHII")
_SENDER_INFO = struct.Struct("!IQIII")  # ssrc, NTP, RTP ts, packets, octets
_BLOCK = struct.Struct("!IIIIII")  # ssrc, fraction|lost, highest seq, jitter, LSR, DLSR
_FIR_ENTRY = struct.Struct("!IB3x")
_NACK_PAIR = struct.Struct("!HH")
_REMB_FCI = struct.Struct("!4sBBH")  # 'REMB', num ssrc, exp(6)|mantissa(18)
_FB_HEADER = struct.Struct("!II")

_V2 = 0x80


class RtcpError(ValueError):
    """Malformed RTCP (or arguments a builder cannot encode)."""


class ReportBlock(NamedTuple):
    """A reception report block (RFC 3550 section 6.4.1).

    ``packets_lost`` is the signed 24-bit cumulative number of packets lost.
    """

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int


class SenderReport(NamedTuple):
    ssrc: int
    ntp: int  # 64-bit NTP timestamp
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...]


class ReceiverReport(NamedTuple):
    ssrc: int
    reports: tuple[ReportBlock, ...]


class Pli(NamedTuple):
    sender_ssrc: int
    media_ssrc: int


class Fir(NamedTuple):
    """Full Intra Request. The header's media SSRC is 0; targets are in the FCI."""

    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]  # (target ssrc, command sequence number)


class Nack(NamedTuple):
    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]  # sequence numbers expanded from the PID+BLP pairs


class Remb(NamedTuple):
    sender_ssrc: int
    bitrate: int  # bits per second
    ssrcs: tuple[int, ...]


class Bye(NamedTuple):
    ssrcs: tuple[int, ...]


RtcpPacket: TypeAlias = SenderReport | ReceiverReport | Pli | Fir | Nack | Remb | Bye


# --------------------------------------------------------------------------- parsing


def _parse_blocks(data: bytes, pos: int, count: int) -> tuple[ReportBlock, ...]:
    blocks = []
    unpack_from = _BLOCK.unpack_from
    for _ in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr))
        pos += 24
    return tuple(blocks)


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse a (compound) RTCP packet into the messages the SFU understands.

    Unknown packet types and feedback formats are skipped after their common
    header has been validated. Raises :class:`RtcpError` on any malformed
    header, length, padding or count; never anything else.
    """
    try:
        size = len(data)
    except TypeError as exc:
        raise RtcpError(f"RTCP data must be bytes-like, not {type(data).__name__}") from exc
    if size == 0:
        raise RtcpError("empty RTCP packet")

    packets: list[RtcpPacket] = []
    pos = 0
    hdr_unpack = _HDR.unpack_from
    try:
        while pos < size:
            if size - pos < 4:
                raise RtcpError(f"truncated RTCP header at offset {pos}")
            first, pt, length = hdr_unpack(data, pos)
            if first & 0xC0 != _V2:
                raise RtcpError(f"RTCP version {first >> 6} at offset {pos}")
            if not 192 <= pt <= 223:
                raise RtcpError(f"packet type {pt} at offset {pos} is not RTCP")
            start = pos + 4
            end = start + length * 4
            if end > size:
                raise RtcpError(
                    f"RTCP packet at offset {pos} claims {length * 4 + 4} bytes, "
                    f"only {size - pos} left"
                )
            pos = end
            if first & 0x20:  # padding: the last octet counts the padding octets
                if end == start:
                    raise RtcpError("RTCP padding bit set on an empty packet")
                pad = data[end - 1]
                if pad == 0 or pad > end - start:
                    raise RtcpError(f"invalid RTCP padding length {pad}")
                end -= pad
            message = _parse_message(data, pt, first & 0x1F, start, end)
            if message is not None:
                packets.append(message)
    except struct.error as exc:  # defensive: every length is checked before it is read
        raise RtcpError(f"malformed RTCP: {exc}") from exc
    return packets


def _parse_message(data: bytes, pt: int, count: int, start: int, end: int) -> RtcpPacket | None:
    """One RTCP packet's body (its header checked, padding removed), or None for
    SDES, APP, XR, anything else in 192..223 and feedback formats the SFU ignores."""
    plen = end - start
    if pt == RTCP_SR:
        if plen < 24 + 24 * count:
            raise RtcpError(f"SR with {count} blocks needs more than {plen} bytes")
        ssrc, ntp, rtp_ts, pkts, octets = _SENDER_INFO.unpack_from(data, start)
        return SenderReport(ssrc, ntp, rtp_ts, pkts, octets, _parse_blocks(data, start + 24, count))
    if pt == RTCP_RR:
        if plen < 4 + 24 * count:
            raise RtcpError(f"RR with {count} blocks needs more than {plen} bytes")
        (ssrc,) = _U32S.unpack_from(data, start)
        return ReceiverReport(ssrc, _parse_blocks(data, start + 4, count))
    if pt == RTCP_BYE:
        if plen < 4 * count:
            raise RtcpError(f"BYE with {count} sources needs more than {plen} bytes")
        return Bye(struct.unpack_from(f"!{count}I", data, start))
    if pt in (RTCP_RTPFB, RTCP_PSFB):
        return _parse_feedback(data, pt, count, start, end)
    return None


def _parse_feedback(data: bytes, pt: int, fmt: int, start: int, end: int) -> RtcpPacket | None:
    """A transport-layer (RTPFB) or payload-specific (PSFB) feedback message (RFC 4585)."""
    plen = end - start
    if plen < 8:
        raise RtcpError(f"feedback packet of {plen} bytes (needs 8)")
    sender, media = _FB_HEADER.unpack_from(data, start)
    fci = start + 8
    fci_len = plen - 8
    if pt == RTCP_RTPFB:
        if fmt == RTPFB_NACK:
            return Nack(sender, media, _parse_nack_fci(data, fci, fci_len))
        return None
    if fmt == PSFB_PLI:
        return Pli(sender, media)
    if fmt == PSFB_FIR:
        if fci_len == 0 or fci_len % 8:
            raise RtcpError(f"FIR FCI of {fci_len} bytes (needs 8 per entry)")
        entries = tuple((e[0], e[1]) for e in _FIR_ENTRY.iter_unpack(data[fci:end]))
        return Fir(sender, entries)
    if fmt == PSFB_AFB and fci_len >= 4 and data[fci : fci + 4] == b"REMB":
        return _parse_remb(data, sender, fci, fci_len)
    return None


def _parse_nack_fci(data: bytes, pos: int, fci_len: int) -> tuple[int, ...]:
    if fci_len == 0 or fci_len % 4:
        raise RtcpError(f"NACK FCI of {fci_len} bytes")
    lost: list[int] = []
    append = lost.append
    unpack_from = _NACK_PAIR.unpack_from
    for off in range(pos, pos + fci_len, 4):
        pid, blp = unpack_from(data, off)
        append(pid)
        bit = 0
        while blp:
            if blp & 1:
                append((pid + bit + 1) & 0xFFFF)
            blp >>= 1
            bit += 1
    return tuple(lost)


def _parse_remb(data: bytes, sender: int, pos: int, fci_len: int) -> Remb:
    if fci_len < 8:
        raise RtcpError(f"REMB FCI of {fci_len} bytes (needs 8)")
    _, num, exp_hi, mant_lo = _REMB_FCI.unpack_from(data, pos)
    if fci_len < 8 + 4 * num:
        raise RtcpError(f"REMB with {num} SSRCs needs more than {fci_len} bytes")
    bitrate = ((exp_hi & 0x03) << 16 | mant_lo) << (exp_hi >> 2)
    return Remb(sender, bitrate, struct.unpack_from(f"!{num}I", data, pos + 8))


# -------------------------------------------------------------------------- building


def _block_bytes(reports: Sequence[ReportBlock]) -> bytes:
    pack = _BLOCK.pack
    out = []
    for r in reports:
        lost = r.packets_lost
        if lost > 0x7FFFFF:
            lost = 0x7FFFFF
        elif lost < -0x800000:
            lost = -0x800000
        out.append(
            pack(
                r.ssrc & _U32,
                (r.fraction_lost & 0xFF) << 24 | (lost & 0xFFFFFF),
                r.highest_seq & _U32,
                r.jitter & _U32,
                r.lsr & _U32,
                r.dlsr & _U32,
            )
        )
    return b"".join(out)


def build_sr(
    ssrc: int,
    ntp: int,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    reports: Sequence[ReportBlock] = (),
) -> bytes:
    """A Sender Report. Blocks beyond the 31st go into RR packets that follow it."""
    first = reports[:MAX_REPORT_BLOCKS]
    n = len(first)
    sr = (
        _HDR.pack(_V2 | n, RTCP_SR, 6 + 6 * n)
        + _SENDER_INFO.pack(
            ssrc & _U32, ntp & _U64, rtp_timestamp & _U32, packet_count & _U32, octet_count & _U32
        )
        + (_block_bytes(first) if n else b"")
    )
    if len(reports) > MAX_REPORT_BLOCKS:
        return sr + build_rr(ssrc, reports[MAX_REPORT_BLOCKS:])
    return sr


def build_rr(ssrc: int, reports: Sequence[ReportBlock]) -> bytes:
    """Receiver Report(s): at most 31 blocks per packet, split into several if more.

    With no blocks this is the empty RR (count 0) that starts a compound packet.
    """
    ssrc &= _U32
    if len(reports) <= MAX_REPORT_BLOCKS:
        n = len(reports)
        return _HDR_SSRC.pack(_V2 | n, RTCP_RR, 1 + 6 * n, ssrc) + _block_bytes(reports)
    out = []
    for i in range(0, len(reports), MAX_REPORT_BLOCKS):
        chunk = reports[i : i + MAX_REPORT_BLOCKS]
        n = len(chunk)
        out.append(_HDR_SSRC.pack(_V2 | n, RTCP_RR, 1 + 6 * n, ssrc) + _block_bytes(chunk))
    return b"".join(out)


def build_sdes(chunks: Sequence[tuple[int, str]]) -> bytes:
    """One SDES packet per ``(ssrc, cname)``, each with that one CNAME chunk.

    One chunk a packet, not up to 31: aiortc (1.16) reads the END item's
    padding as an item length, so it rejects a whole compound packet whose
    SDES has several chunks padded as RFC 3550 asks.
    """
    return b"".join([build_sdes_cname(ssrc, cname) for ssrc, cname in chunks])


def build_sdes_cname(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one chunk: the CNAME item, the END item, zero padding."""
    value = cname.encode("utf-8")
    n = len(value)
    if n > 255:
        raise RtcpError(f"CNAME of {n} bytes (at most 255)")
    # chunk = SSRC(4) + type(1) + len(1) + value, then 1..4 null octets (the first
    # is the END item) so that the chunk ends on a 32-bit boundary.
    nulls = 4 - (6 + n) % 4
    words = (6 + n + nulls) // 4
    return (
        _HDR_SSRC.pack(_V2 | 1, RTCP_SDES, words, ssrc & _U32)
        + bytes((SDES_CNAME, n))
        + value
        + b"\x00" * nulls
    )


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """Picture Loss Indication (PSFB fmt 1)."""
    return _HDR_2SSRC.pack(_V2 | PSFB_PLI, RTCP_PSFB, 2, sender_ssrc & _U32, media_ssrc & _U32)


def build_fir(sender_ssrc: int, media_ssrc: int, seq_nr: int) -> bytes:
    """Full Intra Request (PSFB fmt 4): header media SSRC 0, the target in the FCI."""
    return _HDR_2SSRC.pack(_V2 | PSFB_FIR, RTCP_PSFB, 4, sender_ssrc & _U32, 0) + _FIR_ENTRY.pack(
        media_ssrc & _U32, seq_nr & 0xFF
    )


def _nack_pairs(lost: Iterable[int]) -> list[tuple[int, int]]:
    seqs = sorted({s & 0xFFFF for s in lost})
    if not seqs:
        raise RtcpError("NACK with no lost packets")
    if len(seqs) > 1:
        # Order the sequence numbers circularly, starting after the largest gap,
        # so that e.g. {65534, 65535, 0, 1} packs into one PID+BLP pair.
        best_gap = seqs[0] + 0x10000 - seqs[-1]  # the gap across the wrap
        start = 0
        for i in range(1, len(seqs)):
            gap = seqs[i] - seqs[i - 1]
            if gap > best_gap:
                best_gap = gap
                start = i
        if start:
            seqs = seqs[start:] + seqs[:start]
    pairs = []
    pid = seqs[0]
    blp = 0
    for s in seqs[1:]:
        d = (s - pid - 1) & 0xFFFF
        if d < 16:
            blp |= 1 << d
        else:
            pairs.append((pid, blp))
            pid = s
            blp = 0
    pairs.append((pid, blp))
    return pairs


def build_nack(sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> bytes:
    """Generic NACK (RTPFB fmt 1), packed into PID+BLP pairs across the 65535->0 wrap."""
    pairs = _nack_pairs(lost)
    pack = _NACK_PAIR.pack
    return _HDR_2SSRC.pack(
        _V2 | RTPFB_NACK, RTCP_RTPFB, 2 + len(pairs), sender_ssrc & _U32, media_ssrc & _U32
    ) + b"".join([pack(pid, blp) for pid, blp in pairs])


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: Sequence[int]) -> bytes:
    """REMB (PSFB fmt 15, media SSRC 0): bitrate as a 6-bit exponent, 18-bit mantissa.

    The mantissa is truncated (as libwebrtc does); bitrates too large for the
    format are clamped to its maximum.
    """
    if bitrate < 0:
        raise RtcpError(f"negative REMB bitrate {bitrate}")
    n = len(ssrcs)
    if n > 255:
        raise RtcpError(f"REMB with {n} SSRCs (at most 255)")
    exponent = bitrate.bit_length() - 18
    if exponent <= 0:
        exponent = 0
        mantissa = bitrate
    elif exponent > _REMB_MAX_EXPONENT:
        exponent = _REMB_MAX_EXPONENT
        mantissa = _REMB_MAX_MANTISSA
    else:
        mantissa = bitrate >> exponent
    return (
        _HDR_2SSRC.pack(_V2 | PSFB_AFB, RTCP_PSFB, 4 + n, sender_ssrc & _U32, 0)
        + _REMB_FCI.pack(b"REMB", n, exponent << 2 | mantissa >> 16, mantissa & 0xFFFF)
        + (struct.pack(f"!{n}I", *[s & _U32 for s in ssrcs]) if n else b"")
    )


# ------------------------------------------------------------------------------ time


def seconds_to_ntp(seconds: float) -> int:
    """The 64-bit NTP timestamp of a Unix time in seconds."""
    whole = int(seconds // 1)
    frac = int((seconds - whole) * 4294967296.0)
    frac = min(frac, _U32)
    return ((whole + NTP_UNIX_OFFSET) << 32 | frac) & _U64


def ntp_now() -> int:
    """The 64-bit NTP timestamp of ``time.time()`` (integer arithmetic, no float loss)."""
    secs, ns = divmod(time.time_ns(), 1_000_000_000)
    return ((secs + NTP_UNIX_OFFSET) << 32 | (ns << 32) // 1_000_000_000) & _U64


def ntp_to_seconds(ntp: int) -> float:
    """Seconds since the Unix epoch of a 64-bit NTP timestamp.

    Follows RFC 4330 section 3: a seconds field with its top bit clear is taken
    to be in NTP era 1 (from 2036-02-07), so this keeps working past the wrap.
    """
    secs = (ntp >> 32) & _U32
    if not secs & 0x80000000:
        secs += 0x100000000
    return secs - NTP_UNIX_OFFSET + (ntp & _U32) / 4294967296.0


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block."""
    return (ntp >> 16) & _U32


def is_rtcp(data: bytes) -> bool:
    """RFC 5761/7983 demux: first byte 128..191 (RTP/RTCP) and packet type 192..223."""
    return len(data) >= 2 and 128 <= data[0] <= 191 and 192 <= data[1] <= 223
