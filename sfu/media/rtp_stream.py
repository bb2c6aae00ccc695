"""Receive-side statistics of one incoming RTP stream (RFC 3550 A.1, A.3, A.8) and NACK state."""

from __future__ import annotations

from .fastpath import StreamState
from .loss_repair import REPAIR_WINDOW
from .rtcp import ReportBlock, ntp_middle32

# A jump further than this (either way) is a stream restart, not loss or reordering.
_MAX_DROPOUT = 3000
DUPLICATE = -1
RESTARTED = -2
GAP_TOO_WIDE = -3
TOO_LATE = -4
# Gaps of more than REPAIR_WINDOW packets are not NACKed: the keyframe that
# replaces them comes sooner than the repair would be of use (loss_repair.py).
_MAX_MISSING = 1000
# Missing packets older than this are forgotten at the next report block (one
# per RTCP interval). NACKed streams forget theirs sooner (nack_list); the
# others (audio) have no timer, and a stale entry would let a duplicate
# through after the numbering wraps, or hide a restart landing on it.
MISSING_MAX_AGE = 2.0


class RtpStreamRecv(StreamState):
    """Sequence tracking, loss, jitter and the missing-packet set of one SSRC.

    Its fields (fastpath.STREAM_FIELDS, typed in _native.pyi) are in a C struct
    that the C receive path updates too, or in slots without it."""

    __slots__ = ()

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.started = False
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.bytes_received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.transit = 0.0
        self.jitter = 0.0
        # seq -> [first seen missing (monotonic s), NACKs sent, last NACK time]
        self.missing = {}
        self.last_sr_ntp = 0
        self.last_sr_rtp = 0
        self.last_sr_arrival = 0.0
        self.last_packet_time = 0.0
        self.fraction_lost = 0

    def receive(self, seq: int, timestamp: int, now: float, size: int) -> int:
        """Account one packet. Returns the number of newly missing packets
        (>= 0) if the packet is to be forwarded, DUPLICATE, RESTARTED when
        the sender's numbering jumped (a new source behind the same SSRC),
        GAP_TOO_WIDE when more were lost than the repair window holds (forward
        it, and close the gap with a keyframe), or TOO_LATE for a missing
        packet that came when already out of the window (drop it, and close
        its gap with a keyframe).

        A packet older than the highest is forwarded only if it was missing
        (a late or retransmitted packet), so consumers never get duplicates.
        """
        self.last_packet_time = now
        if not self.started:
            self.started = True
            self.base_seq = self.max_seq = seq
            self.transit = now * self.clock_rate - timestamp
            self.received = 1
            self.bytes_received = size
            return 0
        delta = (seq - self.max_seq) & 0xFFFF
        if delta == 0:
            return DUPLICATE
        newly_missing = 0
        if _MAX_DROPOUT < delta < 0x10000 - _MAX_DROPOUT and seq not in self.missing:
            self._restart(seq, timestamp, now, size)
            return RESTARTED
        if delta < 0x8000:
            if seq < self.max_seq:
                self.cycles += 0x10000
            # delta - 1 lost; the oldest of them is delta - 1 behind this one
            if delta - 1 > REPAIR_WINDOW:
                newly_missing = GAP_TOO_WIDE
            elif delta > 1:
                newly_missing = self._add_missing(seq, delta - 1, now)
            self.max_seq = seq
            transit = now * self.clock_rate - timestamp
            d = transit - self.transit
            self.transit = transit
            self.jitter += (abs(d) - self.jitter) / 16.0
        elif self.missing.pop(seq, None) is None:
            return DUPLICATE  # a duplicate, or older than anything we track
        elif (self.max_seq - seq) & 0xFFFF > REPAIR_WINDOW:
            self.received += 1
            self.bytes_received += size
            return TOO_LATE
        self.received += 1
        self.bytes_received += size
        return newly_missing

    def _restart(self, seq: int, timestamp: int, now: float, size: int) -> None:
        self.base_seq = self.max_seq = seq
        self.cycles = 0
        self.received = 1
        self.expected_prior = self.received_prior = 0
        self.bytes_received += size
        self.transit = now * self.clock_rate - timestamp
        self.missing.clear()

    def _add_missing(self, seq: int, count: int, now: float) -> int:
        if len(self.missing) + count > _MAX_MISSING:
            self.missing.clear()
            return GAP_TOO_WIDE
        for i in range(count, 0, -1):
            self.missing[(seq - i) & 0xFFFF] = [now, 0.0, 0.0]
        return count

    def nack_list(
        self, now: float, retry_interval: float, max_age: float, max_tries: int
    ) -> tuple[list[int], bool]:
        """Sequence numbers to NACK now, and whether any missing packet was
        given up: past its age or tries, or out of the repair window (its gap
        is then the caller's to close with a keyframe)."""
        due: list[int] = []
        expired: list[int] = []
        newest = self.max_seq
        for seq, state in self.missing.items():
            if (
                (newest - seq) & 0xFFFF > REPAIR_WINDOW
                or now - state[0] > max_age
                or state[1] >= max_tries
            ):
                expired.append(seq)
            elif now - state[2] >= retry_interval:
                state[1] += 1
                state[2] = now
                due.append(seq)
        for seq in expired:
            del self.missing[seq]
        return due, bool(expired)

    def receive_sr(self, ntp: int, rtp_timestamp: int, now: float) -> None:
        self.last_sr_ntp = ntp
        self.last_sr_rtp = rtp_timestamp
        self.last_sr_arrival = now

    @property
    def extended_max_seq(self) -> int:
        return self.cycles + self.max_seq

    def report_block(self, now: float) -> ReportBlock:
        """An RR report block, and the interval's fraction lost (RFC 3550 A.3)."""
        if self.missing:
            oldest = now - MISSING_MAX_AGE
            for seq in [s for s, state in self.missing.items() if state[0] < oldest]:
                del self.missing[seq]
        expected = self.extended_max_seq - self.base_seq + 1
        lost = max(-0x800000, min(expected - self.received, 0x7FFFFF))
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval > 0 and lost_interval > 0:
            self.fraction_lost = min(255, (lost_interval << 8) // expected_interval)
        else:
            self.fraction_lost = 0
        if self.last_sr_arrival:
            lsr = ntp_middle32(self.last_sr_ntp)
            dlsr = int((now - self.last_sr_arrival) * 65536) & 0xFFFFFFFF
        else:
            lsr = dlsr = 0
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=self.fraction_lost,
            packets_lost=lost,
            highest_seq=self.extended_max_seq & 0xFFFFFFFF,
            jitter=int(self.jitter) & 0xFFFFFFFF,
            lsr=lsr,
            dlsr=dlsr,
        )
