"""UDP sockets the server owns: bound to the listen IP, within the port range."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import SfuError

# A socket address as the socket module gives it: (host, port) for IPv4,
# (host, port, flowinfo, scope_id) for IPv6; a TCP connection's key (tcp.tcp_key)
# is (host, port, "tcp").
Address = tuple[Any, ...]
DatagramHandler = Callable[[bytes, Address], None]


class PortRangeExhaustedError(SfuError):
    """Every port of the configured range is in use."""

    code = 503


def bind_udp_socket(listen_ip: str, min_port: int, max_port: int) -> socket.socket:
    """A non-blocking UDP socket on a free port of [min_port, max_port]."""
    family = socket.AF_INET6 if ipaddress.ip_address(listen_ip).version == 6 else socket.AF_INET
    ports = list(range(min_port, max_port + 1))
    # Start at a random port so that a restarted server does not reuse the
    # ports its previous clients may still be sending to.
    start = random.randrange(len(ports))
    for port in ports[start:] + ports[:start]:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((listen_ip, port))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        # Room for bursts of keyframes toward many consumers.
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):  # the kernel's cap applies
                sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
        return sock
    raise PortRangeExhaustedError(
        f"no free UDP port in {min_port}-{max_port} on {listen_ip}: "
        "widen media.rtc_min_port/rtc_max_port"
    )


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, handler: DatagramHandler) -> None:
        self._handler = handler

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._handler(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the consent logic deals with dead peers.
        pass


class SocketReader(Protocol):
    """What reads a socket itself: sfu.media._native.RtpReceiver (see fastpath.py)."""

    def drain(self) -> None: ...

    def close(self) -> None: ...


class UdpEndpoint:
    """A bound socket plus its reader: an asyncio datagram transport, or a
    reader of its own (the C receive path) that the event loop calls when
    the socket is readable. Sends go straight to the socket: a full send
    buffer drops the datagram instead of queueing or blocking."""

    def __init__(self, sock: socket.socket, close: Callable[[], None]) -> None:
        self.socket = sock
        self._close = close
        self.local_address: Address = sock.getsockname()
        self.sendto = sock.sendto

    @classmethod
    async def create(
        cls, listen_ip: str, min_port: int, max_port: int, handler: DatagramHandler
    ) -> UdpEndpoint:
        sock = bind_udp_socket(listen_ip, min_port, max_port)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(handler), sock=sock)
        return cls(sock, transport.close)

    @classmethod
    async def create_with_reader(
        cls,
        listen_ip: str,
        min_port: int,
        max_port: int,
        make_reader: Callable[[socket.socket], SocketReader],
    ) -> UdpEndpoint:
        """A socket whose datagrams ``make_reader(socket).drain()`` reads itself."""
        sock = bind_udp_socket(listen_ip, min_port, max_port)
        loop = asyncio.get_running_loop()
        try:
            reader = make_reader(sock)
            loop.add_reader(sock.fileno(), reader.drain)
        except BaseException:
            sock.close()
            raise

        def close() -> None:
            if sock.fileno() < 0:
                return
            # The reader first: it holds the descriptor number, which the OS
            # may give to another socket once this one closes.
            loop.remove_reader(sock.fileno())
            reader.close()
            sock.close()

        return cls(sock, close)

    @classmethod
    async def create_for_media(
        cls,
        listen_ip: str,
        min_port: int,
        max_port: int,
        handler: DatagramHandler,
        make_reader: Callable[[socket.socket], SocketReader] | None,
    ) -> UdpEndpoint:
        """A media socket: read by ``make_reader``'s C reader when there is one (the
        C receive path is built and on), else by ``handler`` datagram by datagram."""
        if make_reader is not None:
            return await cls.create_with_reader(listen_ip, min_port, max_port, make_reader)
        return await cls.create(listen_ip, min_port, max_port, handler)

    @property
    def port(self) -> int:
        return int(self.local_address[1])

    def close(self) -> None:
        self._close()
