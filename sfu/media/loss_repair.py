"""The rules of loss repair, in one place.

Upstream (publisher -> server), one number decides "repair or resynchronise":
:data:`REPAIR_WINDOW`. A packet further behind the newest one than that is of
no use to a subscriber, so:

- the consumer's rewriter drops it as late (``rtp_rewriter.MAX_LATE_PACKETS``
  and the C extension's, which a test holds equal to this);
- the producer NACKs only gaps that fit in the window; a wider gap is closed
  at once with a keyframe request, and the consumers continue their numbering
  from that keyframe without a hole;
- a missing packet that falls out of the window (or out of its NACK age or
  tries) before it arrives is given up, and the gap is closed with a keyframe
  request; a retransmission that comes after that is dropped.

So every packet the server asks a publisher for is either forwarded when it
comes or replaced by a keyframe, never lost unrequested.

64 is what aiortc receivers tolerate: their jitter buffer resets (and decodes
garbage until a keyframe) on a packet 100 or more behind its oldest one.

Downstream (server -> subscriber), :class:`RetransmissionGate` decides which
NACKed packets a consumer resends: mediasoup's rules (``RtpStreamSend``: once
per round trip, nothing older than the receiver can use, only what this
consumer sent) plus a cap on the number of resends of one packet and a budget
of a share of the consumer's media bytes, since a receiver keeps NACKing a
packet until it arrives and a congested link would drown in copies.
"""

from __future__ import annotations

from array import array

from ..models.stats import SUPPRESSION_REASONS, SuppressedCounts

__all__ = [
    "DEFAULT_RTT",
    "MAX_RETRANSMISSIONS",
    "MAX_RETRANSMISSION_AGE_AUDIO",
    "MAX_RETRANSMISSION_AGE_VIDEO",
    "MIN_RESEND_INTERVAL",
    "REPAIR_WINDOW",
    "RETRANSMISSION_BUDGET_MIN_BYTES",
    "RETRANSMISSION_BUDGET_SHARE",
    "SUPPRESSION_REASONS",
    "RetransmissionGate",
    "SuppressedCounts",
]

REPAIR_WINDOW = 64

# Downstream: mediasoup's RtpStreamSend values (DefaultRtt, MaxRetransmissionDelay*).
DEFAULT_RTT = 0.1
MAX_RETRANSMISSION_AGE_VIDEO = 2.0
MAX_RETRANSMISSION_AGE_AUDIO = 1.0
# A NACK for the same packet sooner than this after a resend is premature
# whatever the RTT says (loopback RTTs are well under a millisecond).
MIN_RESEND_INTERVAL = 0.01
# Resends of one packet, in all: a packet lost this often is on a link that
# the next keyframe serves better.
MAX_RETRANSMISSIONS = 4
# Retransmitted bytes may reach this share of the media bytes sent...
RETRANSMISSION_BUDGET_SHARE = 0.2
# ...over about this long, with at least this much to start and to burst with.
RETRANSMISSION_BUDGET_WINDOW = 1.0
RETRANSMISSION_BUDGET_MIN_BYTES = 16 * 1200


class RetransmissionGate:
    """Which NACKed packets of one consumer to resend.

    Keeps, per history slot, the packet it last resent (out seq and out
    timestamp, so a slot reused by a newer packet starts afresh), how often and
    when; and a byte budget refilled from the consumer's media bytes sent.
    """

    __slots__ = (
        "_bytes_seen",
        "_count",
        "_mask",
        "_rate",
        "_refill_time",
        "_resent_at",
        "_seq",
        "_ts",
        "clock_rate",
        "max_age",
        "suppressed",
        "tokens",
    )

    def __init__(self, slots: int, clock_rate: int, max_age: float) -> None:
        assert slots & (slots - 1) == 0, "slots must be a power of two"
        self._mask = slots - 1
        self._seq = array("i", [-1]) * slots
        self._ts = array("I", [0]) * slots
        self._count = bytearray(slots)
        self._resent_at = array("d", [0.0]) * slots
        self.clock_rate = clock_rate
        self.max_age = max_age
        self.tokens = float(RETRANSMISSION_BUDGET_MIN_BYTES)
        self._bytes_seen = 0
        self._rate = 0.0  # media bytes/s, smoothed over about the budget window
        self._refill_time: float | None = None
        self.suppressed = SuppressedCounts()

    def refill(self, media_bytes_sent: int, now: float) -> None:
        """Credit the budget with its share of the media bytes sent since the last call."""
        delta = max(media_bytes_sent - self._bytes_seen, 0)
        self._bytes_seen = media_bytes_sent
        if self._refill_time is not None:
            elapsed = now - self._refill_time
            if elapsed > 0:
                weight = min(elapsed / RETRANSMISSION_BUDGET_WINDOW, 1.0)
                self._rate += (delta / elapsed - self._rate) * weight
        self._refill_time = now
        burst = max(
            float(RETRANSMISSION_BUDGET_MIN_BYTES),
            RETRANSMISSION_BUDGET_SHARE * self._rate * RETRANSMISSION_BUDGET_WINDOW,
        )
        self.tokens = min(self.tokens + RETRANSMISSION_BUDGET_SHARE * delta, burst)

    def allow(
        self,
        out_seq: int,
        out_ts: int,
        size: int,
        newest_ts: int,
        newest_time: float,
        now: float,
        rtt: float,
    ) -> bool:
        """Whether to resend the packet sent as ``out_seq``/``out_ts`` (``size``
        bytes) now; records the resend when it says yes. ``newest_ts`` and
        ``newest_time`` are the consumer's newest packet sent and when."""
        behind = (newest_ts - out_ts) & 0xFFFFFFFF
        if behind >= 0x80000000:
            behind = 0  # newer than the newest: a timestamp that went backwards
        age = behind / self.clock_rate + max(now - newest_time, 0.0)
        if age > self.max_age:
            self.suppressed.too_old += 1
            return False
        slot = out_seq & self._mask
        fresh = self._seq[slot] != out_seq or self._ts[slot] != out_ts
        if not fresh:
            if now - self._resent_at[slot] < max(rtt or DEFAULT_RTT, MIN_RESEND_INTERVAL):
                self.suppressed.recent += 1
                return False
            if self._count[slot] >= MAX_RETRANSMISSIONS:
                self.suppressed.limit += 1
                return False
        if self.tokens < size:
            self.suppressed.budget += 1
            return False
        self.tokens -= size
        if fresh:
            self._seq[slot] = out_seq
            self._ts[slot] = out_ts
            self._count[slot] = 1
        else:
            self._count[slot] += 1
        self._resent_at[slot] = now
        return True

    def not_sent(self) -> None:
        """A NACK named a packet this consumer never sent (or no longer has)."""
        self.suppressed.not_sent += 1
