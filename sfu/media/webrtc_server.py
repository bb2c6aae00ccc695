"""WebRtcServer: one UDP port for every WebRtcTransport of a worker (mediasoup's WebRtcServer).

Datagrams from an address that completed ICE go straight to its transport.
Other datagrams must be STUN binding requests whose USERNAME starts with a
known transport's ufrag: that transport authenticates them, and once a check
is valid the address is mapped to it. Anything else is dropped and counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from aioice import stun

from .fastpath import NATIVE_RECEIVE, new_socket_reader
from .ice_lite import is_stun
from .tcp import TcpListener
from .udp import Address, UdpEndpoint

if TYPE_CHECKING:
    import socket

    from ._native import RtpReceiver
    from .webrtc_transport import WebRtcTransport

logger = logging.getLogger(__name__)


class WebRtcServer:
    def __init__(self) -> None:
        self.endpoint: UdpEndpoint | None = None
        # ICE-TCP on the same port number, when enabled.
        self.tcp_listener: TcpListener | None = None
        # The C receive path: the socket's reader, which takes the transports'
        # common RTP itself (their receivers are its children, see
        # TransportFastPath.share_reader) and hands the rest to datagram_received.
        self.receiver: RtpReceiver | None = None
        self._by_ufrag: dict[str, WebRtcTransport] = {}
        self._by_address: dict[Address, WebRtcTransport] = {}
        self._drops: Counter[str] = Counter()

    @classmethod
    async def create(cls, listen_ip: str, port: int, enable_tcp: bool = False) -> WebRtcServer:
        server = cls()
        server.endpoint = await UdpEndpoint.create_for_media(
            listen_ip,
            port,
            port,
            server.datagram_received,
            server._make_receiver if NATIVE_RECEIVE else None,
        )
        if enable_tcp:
            server.tcp_listener = TcpListener(server.datagram_received, server._tcp_closed)
            await server.tcp_listener.listen(listen_ip, [port])
        logger.info(
            "single-port mode: every transport on UDP%s %s:%d",
            " and TCP" if enable_tcp else "",
            listen_ip,
            port,
        )
        return server

    def _make_receiver(self, sock: socket.socket) -> RtpReceiver:
        self.receiver = new_socket_reader(sock.fileno(), self.datagram_received)
        return self.receiver

    def _tcp_closed(self, key: Address) -> None:
        transport = self._by_address.pop(key, None)
        if transport is not None:
            transport.forget_address(key)

    @property
    def drops(self) -> Counter[str]:
        """Datagrams dropped at the shared port, by reason."""
        drops = Counter(self._drops)
        if self.receiver is not None and self.receiver.oversized:
            drops["oversized-datagram"] += self.receiver.oversized
        return drops

    @property
    def port(self) -> int:
        assert self.endpoint is not None
        return self.endpoint.port

    # ---- registration (by the transports) ---------------------------------

    def add_ufrag(self, ufrag: str, transport: WebRtcTransport) -> None:
        self._by_ufrag[ufrag] = transport

    def add_address(self, address: Address, transport: WebRtcTransport) -> None:
        owner = self._by_address.get(address)
        if owner is not None and owner is not transport:
            owner.forget_address(address)  # the address moved to another transport
        self._by_address[address] = transport

    def remove_transport(self, transport: WebRtcTransport) -> None:
        for ufrag in [u for u, t in self._by_ufrag.items() if t is transport]:
            del self._by_ufrag[ufrag]
        for address in [a for a, t in self._by_address.items() if t is transport]:
            del self._by_address[address]

    # ---- the demultiplexer -------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        transport = self._by_address.get(addr)
        if transport is not None:
            transport.datagram_received(data, addr)
            return
        if not is_stun(data):
            self._drops["unknown-address"] += 1
            return
        try:
            username = stun.parse_message(data).attributes.get("USERNAME")
        except Exception:
            self._drops["stun-malformed"] += 1
            return
        if not isinstance(username, str):
            self._drops["stun-no-username"] += 1
            return
        transport = self._by_ufrag.get(username.partition(":")[0])
        if transport is None:
            self._drops["stun-unknown-ufrag"] += 1
            return
        # The transport authenticates it and, if valid, maps the address here.
        transport.datagram_received(data, addr)

    def close(self) -> None:
        if self.endpoint is not None:  # (its receiver too)
            self.endpoint.close()
        if self.tcp_listener is not None:
            self.tcp_listener.close()
        self._by_ufrag.clear()
        self._by_address.clear()
        self.receiver = None
