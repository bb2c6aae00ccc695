# Type stub of the optional C extension built from native/ (module.c and its parts).
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

class RtpStreamState:
    ssrc: int
    clock_rate: int
    started: bool
    base_seq: int
    max_seq: int
    cycles: int
    received: int
    bytes_received: int
    expected_prior: int
    received_prior: int
    transit: float
    jitter: float
    missing: dict[int, list[float]]
    last_sr_ntp: int
    last_sr_rtp: int
    last_sr_arrival: float
    last_packet_time: float
    fraction_lost: int

class ProducerPath:
    paused: bool
    enabled: bool
    audio_level_sink: Any
    packets_received: int
    bytes_received: int
    def __init__(
        self,
        producer: Any,
        pt_map: dict[int, int],
        ext_forward: dict[int, int],
        abs_send_time_id: int,
        audio_level_id: int,
        follow_up: Any,
        fail: Any,
    ) -> None: ...
    def set_layouts(
        self, layouts: tuple[tuple[int, tuple[Any, ...], tuple[Any, ...]], ...], /
    ) -> None: ...
    def receive(self, stream: Any, packet: bytes, now: float, /) -> bool: ...
    def close(self) -> None: ...

class RtpReceiver:
    bytes_received: int
    rtp_packets_received: int
    unprotect_failures: int
    oversized: int
    last_activity: float
    def __init__(self, fd: int, unprotect: int, on_datagram: Any, on_rtp: Any) -> None: ...
    def set_session(self, session: int, owner: Any, /) -> None: ...
    def set_address(self, address: tuple[Any, ...] | None, /) -> None: ...
    def add_stream(self, ssrc: int, path: ProducerPath, stream: Any, /) -> None: ...
    def remove_stream(self, ssrc: int, /) -> None: ...
    def add_child(self, child: RtpReceiver, /) -> None: ...
    def remove_child(self, child: RtpReceiver, /) -> None: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...
