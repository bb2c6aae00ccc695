"""A consumer's per-packet rewrite: sequence number, timestamp, history, send.

:class:`RtpRewriter` is the Python version of ``sfu.media._native.RtpRewriter``
(the same fields and methods, in C, used when the extension is built and not
turned off with ``SFU_NATIVE_SEND=0``: ``fastpath.new_rewriter`` chooses).
Per packet, the consumer's only work is a call to ``send``; it comes back
(``send`` returns True) only when the numbering must be synced first, which
the consumer decides (keyframe waits, continuing after a pause).

Fields:
- ``active``: false while paused, closed or the producer is paused;
- ``needs_sync``: the next packet restarts the mapping (``send`` returns True);
- ``sync_seq``: the incoming seq at the last sync; older packets are dropped,
  their out seq would collide with ones sent before the sync. It trails the
  newest packet by at most SYNC_TRAIL: "older" is modulo 2^16, and a fixed
  sync point would make every packet look older than it once the stream is
  half the sequence space past it;
- ``seq_offset``/``ts_offset``: out = incoming - offset (mod 2^16 / 2^32);
- ``max_out_seq``, ``last_out_ts``, ``last_send_time``: the newest packet sent;
  packets more than MAX_LATE_PACKETS behind it are dropped (late);
- ``packets_sent``, ``bytes_sent``, ``packets_dropped_late``: counters.

:func:`send_all` calls ``send`` for every rewriter of one consumer layout (in
C: one call from the producer per layout instead of one per consumer;
``fastpath.send_all_function`` chooses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .loss_repair import REPAIR_WINDOW

__all__ = [
    "HISTORY_SIZE",
    "MAX_LATE_PACKETS",
    "SYNC_TRAIL",
    "RtpRewriter",
    "SendAll",
    "send_all",
]

HISTORY_SIZE = 1024  # a power of two: indexed by seq & (HISTORY_SIZE - 1)
# A late packet further behind the newest one sent is useless to receivers:
# drop it. The producer asks only for packets within this window
# (loss_repair.py); native/rewrite.c's MAX_LATE_PACKETS is the same number.
MAX_LATE_PACKETS = REPAIR_WINDOW
# How far sync_seq trails the newest packet. Any packet further behind is
# already dropped as late; any further ahead, the producer's stream takes for
# a restart and resyncs.
SYNC_TRAIL = 0x1000

SendFields = Callable[[int, int, int, int, int, bytes], object]
# (rewriters, b0, b1, tail, seq, timestamp, now) -> None | [(index, error or None)]
SendAll = Callable[
    [tuple[Any, ...], int, int, bytes, int, int, float],
    list[tuple[int, BaseException | None]] | None,
]


class RtpRewriter:
    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.active = False
        self.needs_sync = True
        self.sync_seq = 0
        self.seq_offset = 0
        self.ts_offset = 0
        self.max_out_seq = 0
        self.last_out_ts = 0
        self.last_send_time = 0.0
        self.packets_sent = 0
        self.bytes_sent = 0
        self.packets_dropped_late = 0
        self._send: SendFields | None = None
        # (out_seq, b0, b1, out_ts, tail) by out_seq & (HISTORY_SIZE - 1)
        self._history: list[tuple[int, int, int, int, bytes] | None] = [None] * HISTORY_SIZE

    def use_sender(self, send: SendFields | None) -> None:
        self._send = send

    def send(self, b0: int, b1: int, tail: bytes, seq: int, timestamp: int, now: float) -> bool:
        if not self.active:
            return False
        if self.needs_sync:
            return True
        if ((seq - self.sync_seq) & 0xFFFF) >= 0x8000:
            return False  # older than the sync point: its number would collide
        out_seq = (seq - self.seq_offset) & 0xFFFF
        if MAX_LATE_PACKETS < ((self.max_out_seq - out_seq) & 0xFFFF) < 0x8000:
            self.packets_dropped_late += 1
            return False
        out_ts = (timestamp - self.ts_offset) & 0xFFFFFFFF
        self._history[out_seq & (HISTORY_SIZE - 1)] = (out_seq, b0, b1, out_ts, tail)
        if ((out_seq - self.max_out_seq) & 0xFFFF) < 0x8000:
            self.max_out_seq = out_seq
            self.last_out_ts = out_ts
            self.last_send_time = now
            if ((seq - self.sync_seq) & 0xFFFF) > SYNC_TRAIL:
                self.sync_seq = (seq - SYNC_TRAIL) & 0xFFFF
        self.packets_sent += 1
        self.bytes_sent += 12 + len(tail)
        if self._send is not None:
            self._send(b0, b1, out_seq, out_ts, self.ssrc, tail)
        return False

    def sent(self, out_seq: int) -> tuple[int, int, int, bytes] | None:
        entry = self._history[out_seq & (HISTORY_SIZE - 1)]
        if entry is None or entry[0] != out_seq:
            return None
        return entry[1:]

    def close(self) -> None:
        self.active = False
        self._send = None
        self._history = [None] * HISTORY_SIZE


def send_all(
    rewriters: tuple[Any, ...], b0: int, b1: int, tail: bytes, seq: int, timestamp: int, now: float
) -> list[tuple[int, BaseException | None]] | None:
    """``send`` of every rewriter: None when each returned False, else the
    (index, None) of those that must sync and the (index, error) of those that
    raised; a failure does not stop the others (as ``_native.send_all``)."""
    pending: list[tuple[int, BaseException | None]] | None = None
    for index, rewriter in enumerate(rewriters):
        try:
            if not rewriter.send(b0, b1, tail, seq, timestamp, now):
                continue
            error: BaseException | None = None
        except Exception as raised:
            error = raised
        if pending is None:
            pending = []
        pending.append((index, error))
    return pending
