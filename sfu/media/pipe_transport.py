"""PipeTransport: plain RTP/RTCP over loopback UDP between two routers (mediasoup's PipeTransport).

``Router.pipe_to_router`` (on the control side) links a router in one worker
process to a router in another: a pipe consumer here sends a producer's
packets, unencrypted, to the peer pipe transport, where a pipe producer with
the same id feeds that router's consumers. Keyframe requests and NACKs flow
back the same way. Both ends are sockets on the same host, so there is no ICE
nor DTLS: packets are accepted only from the connected remote address.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
from typing import TYPE_CHECKING, Any

from ..channel.messages import ConnectPipeTransportRequest, Event, Method, PipeTransportCreated
from ..errors import InvalidRequestError, InvalidStateError
from .transport import Transport
from .udp import Address, UdpEndpoint

if TYPE_CHECKING:
    from .router import Router

logger = logging.getLogger(__name__)

_U32 = struct.Struct("!I")


class PipeTransport(Transport):
    """Events: ``routerclose``, ``serverclose(reason)``, ``@close``."""

    def __init__(self, *, router: Router, app_data: dict[str, Any]) -> None:
        super().__init__(router=router, app_data=app_data)
        self._endpoint: UdpEndpoint | None = None
        self.remote_address: tuple[str, int] | None = None

    async def start(self, listen_ip: str) -> None:
        # An ephemeral port: pipes stay on this host and use none of the public range.
        self._endpoint = await UdpEndpoint.create(listen_ip, 0, 0, self.datagram_received)
        self._schedule_rtcp()

    @property
    def local_address(self) -> tuple[str, int]:
        assert self._endpoint is not None
        return (str(self._endpoint.local_address[0]), self._endpoint.port)

    def info(self) -> PipeTransportCreated:
        ip, port = self.local_address
        return PipeTransportCreated(id=self.id, ip=ip, port=port)

    async def handle_request(self, method: Method, data: Any) -> Any:
        if method == Method.TRANSPORT_CONNECT:
            request: ConnectPipeTransportRequest = data
            await self.connect(request["ip"], request["port"])
            return None
        return await super().handle_request(method, data)

    async def connect(self, ip: str, port: int) -> None:
        self._check_open()
        if self.remote_address is not None:
            raise InvalidStateError("connect() already called on this pipe transport")
        if not isinstance(ip, str) or not isinstance(port, int) or not 0 < port < 65536:
            raise InvalidRequestError("a pipe transport connects to {ip, port}")
        self.remote_address = (ip, port)

    # ---- datagrams --------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self._demux(data, addr)
        except Exception:
            self.drops["internal-error"] += 1
            logger.exception("pipe transport %s: error handling a datagram; closing it", self.id)
            self.close(reason="error")

    def _demux(self, data: bytes, addr: Address) -> None:
        if self.closed:
            return
        # Pipes bind 127.0.0.1: the sender's address is an (ip, port) pair.
        if addr != self.remote_address:
            self.drops["from-unknown-address"] += 1
            return
        if len(data) < 12 or not 127 < data[0] < 192:
            self.drops["unknown-packet"] += 1
            return
        self.bytes_received += len(data)
        now = time.monotonic()
        if 191 < data[1] < 224:
            self._receive_rtcp(data, now)
            return
        self.rtp_packets_received += 1
        producer = self._producers_by_ssrc.get(_U32.unpack_from(data, 8)[0])
        if producer is None:
            self.drops["unknown-ssrc"] += 1
            return
        try:
            producer.receive_rtp(data, now)
        except Exception as error:
            producer.fail(error)

    def _send(self, packet: bytes) -> bool:
        if self._endpoint is None or self.remote_address is None or self.closed:
            return False
        try:
            self._endpoint.sendto(packet, self.remote_address)
        except OSError:  # a full buffer: drop, never block
            self.drops["send-failed"] += 1
            return False
        self.bytes_sent += len(packet)
        return True

    def send_rtp(self, packet: bytes) -> None:
        if self._send(packet):
            self.rtp_packets_sent += 1

    def send_rtcp(self, packet: bytes) -> None:
        if self._send(packet):
            self.rtcp_packets_sent += 1

    def _rtcp_ready(self) -> bool:
        return self.remote_address is not None

    # ---- closing and stats ----------------------------------------------------------

    def close(self, reason: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._close_children()
        if self._endpoint is not None:
            with contextlib.suppress(Exception):
                self._endpoint.close()
        if reason is not None:
            self.notify(Event.SERVER_CLOSE, reason)
        self.emit_close()

    def get_stats(self) -> list[dict[str, Any]]:
        local = self.local_address if self._endpoint is not None else None
        return [
            {
                "type": "pipe-transport",
                "transportId": self.id,
                "tuple": {
                    "localIp": local[0] if local else None,
                    "localPort": local[1] if local else None,
                    "remoteIp": self.remote_address[0] if self.remote_address else None,
                    "remotePort": self.remote_address[1] if self.remote_address else None,
                    "protocol": "udp",
                },
                "bytesReceived": self.bytes_received,
                "bytesSent": self.bytes_sent,
                "rtpPacketsReceived": self.rtp_packets_received,
                "rtpPacketsSent": self.rtp_packets_sent,
                "rtcpPacketsReceived": self.rtcp_packets_received,
                "rtcpPacketsSent": self.rtcp_packets_sent,
                "droppedPackets": dict(self.drops),
            }
        ]
