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
