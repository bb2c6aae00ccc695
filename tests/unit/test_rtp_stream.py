"""Receive statistics of one incoming stream (sfu/media/rtp_stream.py)."""

from __future__ import annotations

from sfu.media.rtp_stream import DUPLICATE, MISSING_MAX_AGE, RESTARTED, RtpStreamRecv


def test_missing_packets_are_forgotten_once_too_old_to_be_of_use() -> None:
    # An audio stream: no NACK timer ages its missing set; the report blocks do.
    stream = RtpStreamRecv(1, 48000)
    assert stream.receive(100, 0, 10.0, 50) == 0
    assert stream.receive(103, 2880, 10.06, 50) == 2  # 101 and 102 lost
    assert set(stream.missing) == {101, 102}
    stream.report_block(10.0 + MISSING_MAX_AGE - 0.5)
    assert set(stream.missing) == {101, 102}, "still young: a late packet may come"
    assert stream.receive(101, 960, 11.0, 50) == 0  # late, forwarded
    stream.report_block(10.06 + MISSING_MAX_AGE + 0.01)
    assert stream.missing == {}
    # Now 102 is too old to forward: it is taken for a duplicate.
    assert stream.receive(102, 1920, 12.2, 50) == DUPLICATE


def test_a_forgotten_gap_does_not_hide_a_restart() -> None:
    stream = RtpStreamRecv(1, 48000)
    stream.receive(100, 0, 10.0, 50)
    stream.receive(103, 2880, 10.06, 50)
    stream.report_block(10.06 + MISSING_MAX_AGE + 0.01)
    # Far away from the numbering, landing where the stale entry was would
    # once have been taken for a late packet: it is a new source.
    stream.missing[40000] = [0.0, 0.0, 0.0]
    stream.report_block(10.06 + MISSING_MAX_AGE + 0.02)
    assert stream.receive(40000, 9000, 12.2, 50) == RESTARTED
