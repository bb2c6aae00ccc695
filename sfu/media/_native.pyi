# Type stub of the optional C extension built from _native.c.
from typing import Any

PROTECT_FAILED: int
SEND_FAILED: int
MAX_PACKET: int

class SrtpSender:
    packets_sent: int
    bytes_sent: int
    protect_failures: int
    send_failures: int
    def __init__(
        self, protect: int, session: int, fd: int, host: str, port: int, owner: Any
    ) -> None: ...
    def send_fields(
        self, b0: int, b1: int, seq: int, timestamp: int, ssrc: int, tail: bytes, /
    ) -> int: ...

class RtpRewriter:
    active: bool
    needs_sync: bool
    sync_seq: int
    seq_offset: int
    ts_offset: int
    max_out_seq: int
    last_out_ts: int
    last_send_time: float
    ssrc: int
    packets_sent: int
    bytes_sent: int
    packets_dropped_late: int
    def __init__(self, ssrc: int) -> None: ...
    def use_sender(self, send: Any) -> None: ...
    def send(
        self, b0: int, b1: int, tail: bytes, seq: int, timestamp: int, now: float, /
    ) -> bool: ...
    def sent(self, out_seq: int, /) -> tuple[int, int, int, bytes] | None: ...
    def close(self) -> None: ...

def send_all(
    rewriters: tuple[Any, ...],
    b0: int,
    b1: int,
    tail: bytes,
    seq: int,
    timestamp: int,
    now: float,
    /,
) -> list[tuple[int, BaseException | None]] | None: ...
