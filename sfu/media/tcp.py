"""ICE over TCP (RFC 6544), passive side: a TCP listener whose connections carry
STUN, DTLS and SRTP packets framed with a 2-byte length (RFC 4571).

Each accepted connection gets an address key ``(ip, port, "tcp")`` that can
never collide with a UDP ``(ip, port)`` address, so the transport's identity
rules (media only from addresses that passed an ICE check) apply unchanged.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

from .udp import Address, DatagramHandler, PortRangeExhaustedError

_LENGTH = struct.Struct("!H")
# A connection that lets this much pile up unsent is too slow: drop packets.
MAX_WRITE_BUFFER = 1 << 20


def tcp_key(peername: Address) -> Address:
    return (peername[0], peername[1], "tcp")


def is_tcp_key(address: Address) -> bool:
    return len(address) == 3 and address[2] == "tcp"


def frame(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


class FrameDecoder:
    """Splits an RFC 4571 byte stream into packets."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        packets = []
        while len(self._buffer) >= 2:
            length = _LENGTH.unpack_from(self._buffer, 0)[0]
            if len(self._buffer) < 2 + length:
                break
            packets.append(bytes(self._buffer[2 : 2 + length]))
            del self._buffer[: 2 + length]
        return packets


class _Connection(asyncio.Protocol):
    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.key: Address = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.key = tcp_key(transport.get_extra_info("peername"))
        self.listener.connections[self.key] = transport

    def data_received(self, data: bytes) -> None:
        for packet in self.decoder.feed(data):
            if packet:
                self.listener.handler(packet, self.key)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.pop(self.key, None)
        self.listener.on_closed(self.key)


class TcpListener:
    """A passive ICE-TCP listener; ``handler(packet, key)`` gets every framed packet."""

    def __init__(self, handler: DatagramHandler, on_closed: Callable[[Address], None]) -> None:
        self.handler = handler
        self.on_closed = on_closed
        self.connections: dict[Address, asyncio.Transport] = {}
        self._server: asyncio.Server | None = None
        self.port = 0

    async def listen(self, listen_ip: str, ports: list[int]) -> None:
        loop = asyncio.get_running_loop()
        for port in ports:
            try:
                self._server = await loop.create_server(
                    lambda: _Connection(self), listen_ip, port, reuse_address=True
                )
            except OSError:
                continue
            self.port = int(self._server.sockets[0].getsockname()[1])
            return
        raise PortRangeExhaustedError(
            f"no free TCP port for ICE-TCP in {ports[0]}-{ports[-1]} on {listen_ip}"
        )

    def send(self, key: Address, data: bytes) -> bool:
        connection = self.connections.get(key)
        if connection is None or connection.is_closing():
            return False
        if connection.get_write_buffer_size() > MAX_WRITE_BUFFER:
            return False  # never block or buffer without bound for a slow client
        connection.write(frame(data))
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            connection.close()
        self.connections.clear()
