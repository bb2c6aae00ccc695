"""Unit tests of the raw-bytes RTCP codec (sfu/media/rtcp.py)."""

from __future__ import annotations

import random
import struct
import time

import pytest
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from sfu.media.rtcp import (
    Bye,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpError,
    SenderReport,
    build_fir,
    build_nack,
    build_pli,
    build_remb,
    build_rr,
    build_sdes_cname,
    build_sr,
    is_rtcp,
    ntp_middle32,
    ntp_now,
    ntp_to_seconds,
    parse_compound,
    seconds_to_ntp,
)

BLOCK_A = ReportBlock(
    ssrc=0x1234ABCD,
    fraction_lost=25,
    packets_lost=-3,
    highest_seq=0x0001_FFFE,
    jitter=120,
    lsr=0xDEADBEEF,
    dlsr=0x00018000,
)
BLOCK_B = ReportBlock(
    ssrc=0xFFFFFFFF,
    fraction_lost=255,
    packets_lost=0x7FFFFF,
    highest_seq=7,
    jitter=0,
    lsr=0,
    dlsr=0,
)


def _blocks(n: int) -> list[ReportBlock]:
    return [
        ReportBlock(1000 + i, i % 256, i - 10, 50_000 + i, i * 3, i * 7, i * 11) for i in range(n)
    ]


# ----------------------------------------------------------------- round trips


def test_sr_round_trip() -> None:
    ntp = 0xE8F1_2345_8000_0000
    data = build_sr(0xCAFEBABE, ntp, 0xFFFFFFFF, 1234, 987_654, [BLOCK_A, BLOCK_B])
    assert len(data) == 28 + 2 * 24
    assert parse_compound(data) == [
        SenderReport(0xCAFEBABE, ntp, 0xFFFFFFFF, 1234, 987_654, (BLOCK_A, BLOCK_B))
    ]


def test_sr_without_blocks() -> None:
    data = build_sr(1, 2, 3, 4, 5)
    assert len(data) == 28
    assert parse_compound(data) == [SenderReport(1, 2, 3, 4, 5, ())]


def test_sr_counters_wrap_instead_of_raising() -> None:
    data = build_sr(1, 2, 0x1_0000_0005, 0x1_0000_0006, 0x1_0000_0007)
    assert parse_compound(data) == [SenderReport(1, 2, 5, 6, 7, ())]


def test_sr_with_more_than_31_blocks_is_followed_by_rr() -> None:
    blocks = _blocks(40)
    data = build_sr(42, 7, 8, 9, 10, blocks)
    sr, rr = parse_compound(data)
    assert sr == SenderReport(42, 7, 8, 9, 10, tuple(blocks[:31]))
    assert rr == ReceiverReport(42, tuple(blocks[31:]))


def test_rr_round_trip() -> None:
    data = build_rr(0x01020304, [BLOCK_A])
    assert parse_compound(data) == [ReceiverReport(0x01020304, (BLOCK_A,))]


def test_empty_rr() -> None:
    data = build_rr(5, [])
    assert data == bytes([0x80, 201, 0, 1, 0, 0, 0, 5])
    assert parse_compound(data) == [ReceiverReport(5, ())]


def test_rr_splits_into_packets_of_31_blocks() -> None:
    blocks = _blocks(70)
    packets = parse_compound(build_rr(9, blocks))
    assert [len(p.reports) for p in packets if isinstance(p, ReceiverReport)] == [31, 31, 8]
    assert all(isinstance(p, ReceiverReport) and p.ssrc == 9 for p in packets)
    assert tuple(b for p in packets for b in p.reports) == tuple(blocks)  # type: ignore[union-attr]


def test_packets_lost_is_signed_24_bit_and_clamped() -> None:
    for lost in (0, 1, -1, 0x7FFFFF, -0x800000):
        block = BLOCK_A._replace(packets_lost=lost)
        assert parse_compound(build_rr(1, [block]))[0].reports == (block,)  # type: ignore[union-attr]
    too_many = BLOCK_A._replace(packets_lost=10**9)
    assert parse_compound(build_rr(1, [too_many]))[0].reports[0].packets_lost == 0x7FFFFF  # type: ignore[union-attr]
    too_few = BLOCK_A._replace(packets_lost=-(10**9))
    assert parse_compound(build_rr(1, [too_few]))[0].reports[0].packets_lost == -0x800000  # type: ignore[union-attr]


def test_pli_round_trip() -> None:
    data = build_pli(0x11111111, 0x22222222)
    assert len(data) == 12
    assert parse_compound(data) == [Pli(0x11111111, 0x22222222)]


def test_fir_round_trip() -> None:
    data = build_fir(0xAAAA0001, 0xBBBB0002, 300)  # the seq nr is 8 bits: 300 -> 44
    assert len(data) == 20
    # the header's media SSRC is 0: the target is only in the FCI
    assert struct.unpack_from("!I", data, 8)[0] == 0
    assert parse_compound(data) == [Fir(0xAAAA0001, ((0xBBBB0002, 44),))]


def test_fir_with_several_entries() -> None:
    fci = struct.pack("!IB3xIB3x", 10, 1, 20, 2)
    data = struct.pack("!BBHII", 0x84, 206, 2 + len(fci) // 4, 99, 0) + fci
    assert parse_compound(data) == [Fir(99, ((10, 1), (20, 2)))]


def test_nack_round_trip() -> None:
    lost = [100, 101, 105, 116, 117, 200]
    data = build_nack(1, 2, lost)
    # 100 with bits for 101, 105, 116 (d = 15); 117 starts a new pair; then 200
    assert len(data) == 12 + 3 * 4
    assert parse_compound(data) == [Nack(1, 2, tuple(lost))]


def test_nack_dedups_and_sorts() -> None:
    assert parse_compound(build_nack(1, 2, [7, 3, 7, 5, 3])) == [Nack(1, 2, (3, 5, 7))]


def test_nack_wraparound_packs_into_one_pair() -> None:
    lost = [65533, 65535, 0, 2]
    data = build_nack(3, 4, lost)
    assert len(data) == 16  # one PID+BLP pair
    pid, blp = struct.unpack_from("!HH", data, 12)
    assert pid == 65533
    assert blp == 0b10110  # 65535 is PID+2, 0 is PID+3, 2 is PID+5 (bit d = PID+d+1)
    blp_bits = {d + 1 for d in range(16) if blp >> d & 1}
    assert blp_bits == {2, 3, 5}
    assert parse_compound(data) == [Nack(3, 4, (65533, 65535, 0, 2))]


def test_nack_wraparound_order_does_not_matter() -> None:
    # unsorted, with values given unmasked (65536 == 0)
    data = build_nack(3, 4, [2, 65536, 65535, 65533])
    assert parse_compound(data) == [Nack(3, 4, (65533, 65535, 0, 2))]


def test_nack_wraparound_across_pairs() -> None:
    lost = list(range(65520, 65536)) + list(range(0, 20))
    (nack,) = parse_compound(build_nack(3, 4, lost))
    assert isinstance(nack, Nack)
    assert nack.lost == tuple(lost)


def test_nack_blp_wraps_when_parsing() -> None:
    data = struct.pack("!BBHIIHH", 0x81, 205, 3, 1, 2, 65535, 0b11)
    assert parse_compound(data) == [Nack(1, 2, (65535, 0, 1))]


def test_nack_with_nothing_lost_is_refused() -> None:
    with pytest.raises(RtcpError):
        build_nack(1, 2, [])


def test_remb_round_trip_1_5_mbps() -> None:
    data = build_remb(0x55, 1_500_000, [0x1001, 0x1002])
    (remb,) = parse_compound(data)
    assert isinstance(remb, Remb)
    assert remb.sender_ssrc == 0x55
    assert remb.ssrcs == (0x1001, 0x1002)
    # 1_500_000 needs 21 bits: exponent 3, so precision is 2**3 and truncation rounds down
    assert 1_500_000 - 8 < remb.bitrate <= 1_500_000
    assert remb.bitrate == 1_500_000  # divisible by 8
    assert struct.unpack_from("!I", data, 8)[0] == 0  # media SSRC 0


@pytest.mark.parametrize("bitrate", [0, 1, 0x3FFFF, 0x40000, 1_234_567, 10**9, 3 * 10**11])
def test_remb_bitrates_within_mantissa_precision(bitrate: int) -> None:
    (remb,) = parse_compound(build_remb(1, bitrate, [2]))
    assert isinstance(remb, Remb)
    assert remb.bitrate <= bitrate
    assert bitrate - remb.bitrate < max(1, bitrate >> 17)  # 18-bit mantissa


def test_remb_clamps_huge_bitrates_and_refuses_negative() -> None:
    (remb,) = parse_compound(build_remb(1, 1 << 90, []))
    assert remb == Remb(1, 0x3FFFF << 63, ())
    with pytest.raises(RtcpError):
        build_remb(1, -1, [])


def test_bye_parse() -> None:
    data = struct.pack("!BBHII", 0x82, 203, 2, 7, 8)
    assert parse_compound(data) == [Bye((7, 8))]
    # with a reason after the sources: 1 length octet + "gone" + padding
    reason = b"\x04gone\x00\x00\x00"
    data = struct.pack("!BBHI", 0x81, 203, 3, 7) + reason
    assert parse_compound(data) == [Bye((7,))]


@pytest.mark.parametrize("n", range(0, 12))
def test_sdes_cname_padding(n: int) -> None:
    cname = "abcdefghijk"[:n]
    data = build_sdes_cname(0x0BADF00D, cname)
    assert len(data) % 4 == 0
    assert struct.unpack_from("!H", data, 2)[0] == len(data) // 4 - 1
    assert data[0] == 0x81
    assert data[1] == 202
    assert data[8] == 1
    assert data[9] == n
    assert data[10 : 10 + n] == cname.encode()
    tail = data[10 + n :]
    assert 1 <= len(tail) <= 4
    assert set(tail) == {0}
    assert parse_compound(data) == []  # SDES is skipped
    # aiortc reads the CNAME back
    (sdes,) = RtcpPacket.parse(data)
    assert isinstance(sdes, RtcpSdesPacket)
    assert sdes.chunks[0].ssrc == 0x0BADF00D
    assert sdes.chunks[0].items == ([(1, cname.encode())] if n else [(1, b"")])


def test_sdes_cname_too_long() -> None:
    build_sdes_cname(1, "x" * 255)
    with pytest.raises(RtcpError):
        build_sdes_cname(1, "x" * 256)


def test_compound_sr_sdes() -> None:
    ntp = seconds_to_ntp(1_700_000_000.25)
    data = build_sr(0xABCDEF01, ntp, 90_000, 10, 12_000, [BLOCK_A]) + build_sdes_cname(
        0xABCDEF01, "{b8d6a7f0-cname}"
    )
    assert parse_compound(data) == [SenderReport(0xABCDEF01, ntp, 90_000, 10, 12_000, (BLOCK_A,))]
    kinds = [type(p) for p in RtcpPacket.parse(data)]
    assert kinds == [RtcpSrPacket, RtcpSdesPacket]


# Receiver-side compound as Chrome sends it on a recv transport: RR + SDES(CNAME)
# + REMB + transport-cc feedback (which we do not implement and must skip).
CHROME_COMPOUND = bytes.fromhex(
    # RR, count 1, length 7: sender 0x00000001
    "81c90007"
    "00000001"
    # block: ssrc 0x1234abcd, fraction 5, lost 3, ext. highest seq 0x00010f2a,
    # jitter 0x21, LSR 0xe1b34a5c, DLSR 0x00008000 (0.5 s)
    "1234abcd"
    "05000003"
    "00010f2a"
    "00000021"
    "e1b34a5c"
    "00008000"
    # SDES, 1 chunk, length 6: ssrc 1, CNAME (16 octets), END + 1 pad octet
    "81ca0006"
    "00000001"
    "0110"
    "6162636465666768696a6b6c6d6e6f70"
    "0000"
    # PSFB fmt 15 (REMB), length 5: sender 1, media 0, 'REMB', 1 ssrc,
    # exponent 3 | mantissa 0x2dc6c (187500) -> 1_500_000 bps, ssrc 0x1234abcd
    "8fce0005"
    "00000001"
    "00000000"
    "52454d42"
    "010e"
    "dc6c"
    "1234abcd"
    # RTPFB fmt 15 (transport-cc) with the padding bit set, length 6: sender 1,
    # media 0x1234abcd, base seq 5, status count 3, reference time 0x001a2b,
    # fb count 7, one run-length chunk (3 x small delta), 3 deltas, 3 padding
    # octets the last of which counts them.
    "afcd0006"
    "00000001"
    "1234abcd"
    "0005"
    "0003"
    "001a2b07"
    "2003"
    "100408"
    "000003"
)


def test_chrome_compound() -> None:
    assert parse_compound(CHROME_COMPOUND) == [
        ReceiverReport(1, (ReportBlock(0x1234ABCD, 5, 3, 0x00010F2A, 0x21, 0xE1B34A5C, 0x8000),)),
        Remb(1, 1_500_000, (0x1234ABCD,)),
    ]
    # aiortc agrees on the boundaries of the first three packets. It cannot parse
    # the whole compound: it reads every RTPFB as a NACK and rejects the padded
    # transport-cc feedback, which is one reason we have our own parser.
    kinds = [type(p) for p in RtcpPacket.parse(CHROME_COMPOUND[:84])]
    assert kinds == [RtcpRrPacket, RtcpSdesPacket, RtcpPsfbPacket]
    with pytest.raises(ValueError, match="feedback length is invalid"):
        RtcpPacket.parse(CHROME_COMPOUND)


def test_unknown_types_are_skipped() -> None:
    app = struct.pack("!BBHI4s", 0x80, 204, 2, 1, b"NAME")
    xr = struct.pack("!BBHI", 0x80, 207, 1, 1)
    sli = struct.pack("!BBHIII", 0x82, 206, 3, 1, 2, 0)  # PSFB fmt 2
    afb = struct.pack("!BBHII4s", 0x8F, 206, 3, 1, 0, b"ABCD")  # AFB, not REMB
    tmmbr = struct.pack("!BBHIIII", 0x83, 205, 4, 1, 0, 2, 0)  # RTPFB fmt 3
    empty = struct.pack("!BBH", 0x80, 195, 0)  # IJ, no payload
    data = build_rr(1, []) + app + xr + sli + afb + tmmbr + empty + build_pli(1, 2)
    assert parse_compound(data) == [ReceiverReport(1, ()), Pli(1, 2)]


# ------------------------------------------------------------ aiortc interop


def _aiortc_info(b: ReportBlock) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=b.ssrc,
        fraction_lost=b.fraction_lost,
        packets_lost=b.packets_lost,
        highest_sequence=b.highest_seq,
        jitter=b.jitter,
        lsr=b.lsr,
        dlsr=b.dlsr,
    )


def test_aiortc_parses_our_sr_and_rr() -> None:
    ntp = ntp_now()
    (sr,) = RtcpPacket.parse(build_sr(77, ntp, 1, 2, 3, [BLOCK_A, BLOCK_B]))
    assert isinstance(sr, RtcpSrPacket)
    assert sr.ssrc == 77
    assert sr.sender_info == RtcpSenderInfo(
        ntp_timestamp=ntp, rtp_timestamp=1, packet_count=2, octet_count=3
    )
    assert sr.reports == [_aiortc_info(BLOCK_A), _aiortc_info(BLOCK_B)]

    (rr,) = RtcpPacket.parse(build_rr(78, [BLOCK_A]))
    assert isinstance(rr, RtcpRrPacket)
    assert rr.ssrc == 78
    assert rr.reports == [_aiortc_info(BLOCK_A)]


def test_we_parse_aiortc_sr_and_rr() -> None:
    aio_sr = RtcpSrPacket(
        ssrc=77,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=0xE000_0000_1234_5678, rtp_timestamp=9, packet_count=8, octet_count=7
        ),
        reports=[_aiortc_info(BLOCK_A)],
    )
    aio_rr = RtcpRrPacket(ssrc=78, reports=[_aiortc_info(BLOCK_A), _aiortc_info(BLOCK_B)])
    data = bytes(aio_sr) + bytes(aio_rr)
    assert parse_compound(data) == [
        SenderReport(77, 0xE000_0000_1234_5678, 9, 8, 7, (BLOCK_A,)),
        ReceiverReport(78, (BLOCK_A, BLOCK_B)),
    ]
    # byte-identical encodings
    assert bytes(aio_sr) == build_sr(77, 0xE000_0000_1234_5678, 9, 8, 7, [BLOCK_A])
    assert bytes(aio_rr) == build_rr(78, [BLOCK_A, BLOCK_B])


def test_pli_fir_interop_with_aiortc() -> None:
    (pli,) = RtcpPacket.parse(build_pli(5, 6))
    assert pli == RtcpPsfbPacket(fmt=1, ssrc=5, media_ssrc=6, fci=b"")
    assert bytes(RtcpPsfbPacket(fmt=1, ssrc=5, media_ssrc=6)) == build_pli(5, 6)
    assert parse_compound(bytes(RtcpPsfbPacket(fmt=1, ssrc=5, media_ssrc=6))) == [Pli(5, 6)]

    (fir,) = RtcpPacket.parse(build_fir(5, 6, 9))
    assert isinstance(fir, RtcpPsfbPacket)
    assert (fir.fmt, fir.ssrc, fir.media_ssrc) == (4, 5, 0)
    assert fir.fci == struct.pack("!IB3x", 6, 9)
    aio_fir = RtcpPsfbPacket(fmt=4, ssrc=5, media_ssrc=0, fci=struct.pack("!IB3x", 6, 9))
    assert parse_compound(bytes(aio_fir)) == [Fir(5, ((6, 9),))]


def test_nack_interop_with_aiortc() -> None:
    lost = [10, 11, 12, 26, 27, 40, 1000]
    (nack,) = RtcpPacket.parse(build_nack(5, 6, lost))
    assert isinstance(nack, RtcpRtpfbPacket)
    assert (nack.fmt, nack.ssrc, nack.media_ssrc, nack.lost) == (1, 5, 6, lost)
    aio = RtcpRtpfbPacket(fmt=1, ssrc=5, media_ssrc=6, lost=lost)
    assert bytes(aio) == build_nack(5, 6, lost)
    assert parse_compound(bytes(aio)) == [Nack(5, 6, tuple(lost))]


def test_remb_interop_with_aiortc() -> None:
    (remb,) = RtcpPacket.parse(build_remb(5, 1_500_000, [6, 7]))
    assert isinstance(remb, RtcpPsfbPacket)
    assert remb.fmt == 15
    assert unpack_remb_fci(remb.fci) == (1_500_000, [6, 7])
    aio = RtcpPsfbPacket(fmt=15, ssrc=5, media_ssrc=0, fci=pack_remb_fci(2_345_678, [6]))
    assert bytes(aio) == build_remb(5, 2_345_678, [6])
    (ours,) = parse_compound(bytes(aio))
    assert ours == Remb(5, unpack_remb_fci(aio.fci)[0], (6,))


def test_sdes_and_bye_from_aiortc() -> None:
    sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=1, items=[(1, b"cname-x")])])
    bye = RtcpByePacket(sources=[1, 2])
    assert parse_compound(bytes(sdes) + bytes(bye)) == [Bye((1, 2))]


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80",
        b"\x80\xc9\x00",
        bytes.fromhex("41c90001 00000001"),  # version 1
        bytes.fromhex("c1c90001 00000001"),  # version 3
        bytes.fromhex("8060 0001 00000001"),  # PT 96: RTP, not RTCP
        bytes.fromhex("80c90002 00000001"),  # length beyond the data
        bytes.fromhex("81c90001 00000001"),  # RR count 1 but no block
        bytes.fromhex("80c80001 00000001"),  # SR without sender info
        bytes.fromhex("80c90000"),  # RR without SSRC
        bytes.fromhex("83cb0002 00000001 00000002"),  # BYE count 3, 2 sources
        bytes.fromhex("a0c90000"),  # padding bit on an empty packet
        bytes.fromhex("a0c90001 00000000"),  # padding count 0
        bytes.fromhex("a0c90001 00000005"),  # padding count beyond the packet
        bytes.fromhex("81cd0001 00000001"),  # feedback shorter than 8 octets
        bytes.fromhex("81cd0002 00000001 00000002"),  # NACK without FCI
        bytes.fromhex("84ce0002 00000001 00000000"),  # FIR without FCI
        bytes.fromhex("84ce0003 00000001 00000000 00000002"),  # FIR half an entry
        bytes.fromhex("8fce0003 00000001 00000000 52454d42"),  # REMB cut short
        bytes.fromhex("8fce0004 00000001 00000000 52454d42 02000000"),  # 2 ssrcs, none
        build_pli(1, 2) + b"\x80",  # trailing garbage
    ],
)
def test_malformed_raises_rtcp_error(data: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_compound(data)


def test_rtcp_error_is_value_error() -> None:
    assert issubclass(RtcpError, ValueError)


def test_bytes_like_input() -> None:
    data = build_pli(1, 2) + build_nack(1, 2, [5])
    expected = [Pli(1, 2), Nack(1, 2, (5,))]
    assert parse_compound(bytearray(data)) == expected  # type: ignore[arg-type]  # the point
    assert parse_compound(memoryview(data)) == expected  # type: ignore[arg-type]


def _corpus() -> list[bytes]:
    return [
        build_sr(1, ntp_now(), 2, 3, 4, [BLOCK_A, BLOCK_B]),
        build_rr(1, [BLOCK_A]),
        build_rr(1, []),
        build_sdes_cname(1, "cname"),
        build_pli(1, 2),
        build_fir(1, 2, 3),
        build_nack(1, 2, [1, 2, 3, 40, 65535, 0]),
        build_remb(1, 1_500_000, [2, 3]),
        struct.pack("!BBHII", 0x82, 203, 2, 7, 8),
        CHROME_COMPOUND,
        build_sr(1, 2, 3, 4, 5) + build_sdes_cname(1, "x"),
    ]


def test_fuzz_only_rtcp_error() -> None:
    rng = random.Random(0x5EED)
    corpus = _corpus()
    kinds = (SenderReport, ReceiverReport, Pli, Fir, Nack, Remb, Bye)
    outcomes = {"ok": 0, "error": 0}
    for i in range(2000):
        mode = i % 6
        base = bytearray(rng.choice(corpus))
        if mode == 0:  # purely random bytes
            data = bytearray(rng.randbytes(rng.randrange(0, 80)))
        elif mode == 1:  # truncated
            data = base[: rng.randrange(0, len(base))]
        elif mode == 2:  # bit flips
            data = base
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif mode == 3:  # random header: V=2, any P/count/RTCP type/length, random body
            data = bytearray(
                struct.pack(
                    "!BBH", 0x80 | rng.randrange(64), rng.randrange(192, 224), rng.randrange(0, 24)
                )
            )
            data += rng.randbytes(rng.randrange(0, 100))
        elif mode == 4:  # overwritten bytes, appended or cut tails, concatenations
            data = base + bytearray(rng.choice(corpus))
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.5:
                data = data[: rng.randrange(len(data) + 1)]
            else:
                data += rng.randbytes(rng.randrange(0, 9))
        else:  # mutate a single header field (count or length) of the first packet
            data = base
            if rng.random() < 0.5:
                data[0] = (data[0] & 0xE0) | rng.randrange(32)
            else:
                struct.pack_into("!H", data, 2, rng.randrange(0, 0x10000))
        payload = bytes(data)
        try:
            result = parse_compound(payload)
        except RtcpError:
            outcomes["error"] += 1
            continue
        assert isinstance(result, list)
        assert all(isinstance(p, kinds) for p in result)
        outcomes["ok"] += 1
    # the corpus mutations exercise both outcomes
    assert outcomes["ok"] > 100
    assert outcomes["error"] > 100


# ----------------------------------------------------------------- time, demux


def test_ntp_now_and_back() -> None:
    before = time.time()
    ntp = ntp_now()
    after = time.time()
    assert before - 0.001 <= ntp_to_seconds(ntp) <= after + 0.001
    assert ntp >> 32 > 3_900_000_000  # well after 2023 in NTP seconds


def test_ntp_conversions() -> None:
    t = 1_700_000_000.5
    ntp = seconds_to_ntp(t)
    assert ntp == (1_700_000_000 + 2_208_988_800) << 32 | 0x8000_0000
    assert ntp_to_seconds(ntp) == t
    assert ntp_middle32(ntp) == ((1_700_000_000 + 2_208_988_800) & 0xFFFF) << 16 | 0x8000
    assert ntp_middle32(0x1234_5678_9ABC_DEF0) == 0x5678_9ABC
    # after the 2036 era wrap
    t2 = 2_200_000_000.25
    assert ntp_to_seconds(seconds_to_ntp(t2)) == t2


def test_is_rtcp() -> None:
    assert is_rtcp(build_rr(1, []))
    assert is_rtcp(build_pli(1, 2))
    assert is_rtcp(bytes([0x80, 192]))
    assert is_rtcp(bytes([0xBF, 223]))
    assert not is_rtcp(bytes([0x80, 0x6F, 0, 1]))  # RTP opus PT 111
    assert not is_rtcp(bytes([0x80, 0xE0]))  # RTP PT 96 with the marker bit (224)
    assert not is_rtcp(bytes([0x80, 191]))  # RTP PT 63 with the marker bit
    assert not is_rtcp(bytes([0x16, 0xC9]))  # DTLS range
    assert not is_rtcp(bytes([0x00, 0x01]))  # STUN
    assert not is_rtcp(bytes([0xC0, 0xC9]))  # 192: outside 128..191
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(b"")
