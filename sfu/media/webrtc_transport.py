"""WebRtcTransport: ICE-lite + DTLS + SRTP toward one client, on a UDP socket we own.

Datagrams are demultiplexed by their first byte (RFC 7983): STUN goes to the
ICE-lite responder, DTLS to the handshake, SRTP/SRTCP to producers and
consumers. Media is accepted only from addresses that passed an
authenticated ICE check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import pylibsrtp
from aiortc import RTCDataChannel, RTCDataChannelParameters, RTCSctpCapabilities

from ..aiortc_adapter import DtlsSession, RTCCertificate, certificate_fingerprints
from ..channel.messages import ConnectWebRtcTransportRequest, Event, Method, WebRtcTransportCreated
from ..errors import InvalidRequestError, InvalidStateError, UnsupportedError
from ..models import SctpStreamParameters
from .fastpath import SrtpCodec, TransportFastPath
from .ice_lite import IceCredentials, IceLiteResponder, StunVerdict
from .producer import Producer
from .rtp import header_bounds, iter_one_byte_extensions
from .tcp import TcpListener
from .transport import Transport
from .udp import Address, UdpEndpoint

if TYPE_CHECKING:
    from collections import Counter

    from .router import Router
    from .webrtc_server import WebRtcServer

logger = logging.getLogger(__name__)

# The SCTP port of both ends, as mediasoup and browsers use.
SCTP_PORT = 5000

# Silence (no valid STUN nor media) after which ICE is reported "disconnected".
ICE_DISCONNECTED_AFTER = 5.0

_U32 = struct.Struct("!I")


class SctpSettings(NamedTuple):
    """A transport's SCTP association: streams each way, the largest message."""

    num_streams: int
    max_message_size: int


def _mediasoup_dtls_role(remote_role: str) -> str:
    """Our DTLS role is the opposite of the client's ('auto' clients are DTLS clients)."""
    return "client" if remote_role == "server" else "server"


class WebRtcTransport(Transport):
    """Events: ``icestatechange``, ``dtlsstatechange``, ``iceselectedtuplechange``,
    ``routerclose``, ``serverclose(reason)`` (closed by the server itself: ICE
    timeout, DTLS failure, an internal error), ``@close``."""

    def __init__(  # noqa: PLR0913 - mediasoup's WebRtcTransportOptions, keyword-only
        self,
        *,
        router: Router,
        announced_ip: str,
        certificate: RTCCertificate,
        app_data: dict[str, Any],
        ice_timeout: float = 30.0,
        webrtc_server: WebRtcServer | None = None,
        enable_tcp: bool = False,
        force_tcp: bool = False,
        sctp: SctpSettings | None = None,
    ) -> None:
        super().__init__(router=router, app_data=app_data)
        # Single-port mode: the shared socket and its demultiplexer.
        self._webrtc_server = webrtc_server
        # ICE-TCP (RFC 6544 passive): offered when enabled, alone when forced.
        self.enable_tcp = enable_tcp or force_tcp
        self.force_tcp = force_tcp
        self._tcp_listener: TcpListener | None = None
        self._tcp_send: Callable[[Address, bytes], bool] | None = None
        self._tcp_port = 0
        self.ice_timeout = ice_timeout
        self._endpoint: UdpEndpoint | None = None
        self._announced_ip = announced_ip
        self._certificate = certificate

        self.ice = IceLiteResponder(IceCredentials.generate())
        self.ice_state = "new"
        # Behind the ice_selected_tuple property: the C sender follows it.
        self._ice_selected_tuple: Address | None = None
        self._valid_addresses: set[Address] = set()
        self.last_ice_activity = time.monotonic()

        self.dtls_state = "new"
        self.dtls_role: str | None = None
        self._remote_dtls: dict[str, Any] | None = None
        self._dtls = DtlsSession(certificate, self._send_datagram)
        self._dtls_task: asyncio.Task[None] | None = None
        # Data channels: an SCTP association over the DTLS session, started
        # once DTLS is up (its INIT then goes out; the client's comes in).
        self._sctp_settings = sctp or SctpSettings(0, 0)
        self._sctp = (
            self._dtls.sctp_transport(sctp.num_streams, self._sctp_malformed)
            if sctp is not None
            else None
        )
        self._rx_srtp: pylibsrtp.Session | None = None
        self._tx_srtp: pylibsrtp.Session | None = None
        self._rtp_in: SrtpCodec | None = None
        self._rtp_out: SrtpCodec | None = None
        # The C receiver and sender (when built), following the keys and the
        # selected tuple; sfu/media/fastpath.py.
        self._fast = TransportFastPath(self.datagram_received, self._receive_rtp_from_receiver)

    async def start(self, listen_ip: str, min_port: int, max_port: int) -> None:
        server = self._webrtc_server
        if server is not None:
            self._endpoint = server.endpoint
            server.add_ufrag(self.ice.credentials.username_fragment, self)
            self._fast.share_reader(server.receiver)
            if self.enable_tcp:
                if server.tcp_listener is None:
                    raise UnsupportedError("ICE over TCP is not enabled on this server")
                self._tcp_send = server.tcp_listener.send
                self._tcp_port = server.tcp_listener.port
        else:
            self._endpoint = await UdpEndpoint.create_for_media(
                listen_ip, min_port, max_port, self.datagram_received, self._fast.reader_factory
            )
            if self.enable_tcp:
                try:
                    await self._listen_tcp(listen_ip, min_port, max_port)
                except Exception:
                    self._endpoint.close()
                    raise
        self._schedule_rtcp()

    async def _listen_tcp(self, listen_ip: str, min_port: int, max_port: int) -> None:
        assert self._endpoint is not None
        listener = TcpListener(self.datagram_received, self.forget_address)
        # The UDP port's number first, so that one port pair serves both.
        others = [p for p in range(min_port, max_port + 1) if p != self._endpoint.port]
        await listener.listen(listen_ip, [self._endpoint.port, *random.sample(others, len(others))])
        self._tcp_listener = listener
        self._tcp_send = listener.send
        self._tcp_port = listener.port

    def forget_address(self, address: Address) -> None:
        """``address`` is gone: its ICE-TCP connection closed, or (single-port
        mode) it now belongs to another transport."""
        self._valid_addresses.discard(address)
        if self.ice_selected_tuple == address:
            self.ice_selected_tuple = None

    # ---- parameters handed to the client ---------------------------------

    @property
    def ice_parameters(self) -> dict[str, Any]:
        credentials = self.ice.credentials
        return {
            "usernameFragment": credentials.username_fragment,
            "password": credentials.password,
            "iceLite": True,
        }

    @property
    def ice_candidates(self) -> list[dict[str, Any]]:
        assert self._endpoint is not None
        candidates = []
        if not self.force_tcp:
            candidates.append(
                {
                    "foundation": "udpcandidate",
                    "priority": 1076302079,
                    # pymediasoup reads ``ip``, mediasoup-client reads ``address``.
                    "ip": self._announced_ip,
                    "address": self._announced_ip,
                    "protocol": "udp",
                    "port": self._endpoint.port,
                    "type": "host",
                }
            )
        if self.enable_tcp:
            candidates.append(
                {
                    "foundation": "tcpcandidate",
                    "priority": 1076276479,  # below UDP: TCP is the fallback
                    "ip": self._announced_ip,
                    "address": self._announced_ip,
                    "protocol": "tcp",
                    "tcpType": "passive",
                    "port": self._tcp_port,
                    "type": "host",
                }
            )
        return candidates

    @property
    def dtls_parameters(self) -> dict[str, Any]:
        return {"role": "auto", "fingerprints": certificate_fingerprints(self._certificate)}

    @property
    def sctp_parameters(self) -> dict[str, Any] | None:
        if self._sctp is None:
            return None
        return {
            "port": SCTP_PORT,
            "OS": self._sctp_settings.num_streams,
            "MIS": self._sctp_settings.num_streams,
            "maxMessageSize": self._sctp_settings.max_message_size,
        }

    def _sctp_malformed(self) -> None:
        self.drops["sctp-malformed"] += 1

    def _sctp_stream(
        self, stream: SctpStreamParameters, label: str, protocol: str
    ) -> RTCDataChannel:
        if self._sctp is None:
            raise UnsupportedError(
                "this transport has no SCTP: send sctpCapabilities in createWebRtcTransport"
            )
        parameters = RTCDataChannelParameters(
            label=label,
            protocol=protocol,
            ordered=bool(stream.ordered),
            maxPacketLifeTime=stream.max_packet_life_time,
            maxRetransmits=stream.max_retransmits,
            negotiated=True,
            id=stream.stream_id,
        )
        try:
            return RTCDataChannel(self._sctp, parameters)
        except ValueError as error:  # the stream id is still being reset
            raise InvalidStateError(f"SCTP stream {stream.stream_id}: {error}") from None

    def info(self) -> WebRtcTransportCreated:
        return WebRtcTransportCreated(
            id=self.id,
            iceParameters=self.ice_parameters,
            iceCandidates=self.ice_candidates,
            dtlsParameters=self.dtls_parameters,
            sctpParameters=self.sctp_parameters,
            iceState=self.ice_state,
            dtlsState=self.dtls_state,
        )

    # ---- signaling-facing API --------------------------------------------

    async def handle_request(self, method: Method, data: Any) -> Any:
        match method:
            case Method.TRANSPORT_CONNECT:
                request: ConnectWebRtcTransportRequest = data
                await self.connect(request["dtlsParameters"])
                return None
            case Method.TRANSPORT_RESTART_ICE:
                return await self.restart_ice()
        return await super().handle_request(method, data)

    async def connect(self, dtls_parameters: dict[str, Any]) -> None:
        self._check_open()
        if self._remote_dtls is not None:
            raise InvalidStateError("connect() already called on this transport")
        role = dtls_parameters.get("role", "auto")
        fingerprints = dtls_parameters.get("fingerprints")
        if role not in ("auto", "client", "server"):
            raise InvalidRequestError(f"invalid dtlsParameters.role {role!r}")
        if (
            not isinstance(fingerprints, list)
            or not fingerprints
            or not all(
                isinstance(f, dict)
                and isinstance(f.get("algorithm"), str)
                and isinstance(f.get("value"), str)
                for f in fingerprints
            )
        ):
            raise InvalidRequestError(
                "dtlsParameters.fingerprints must be a non-empty list of {algorithm, value}"
            )
        self._remote_dtls = {"role": role, "fingerprints": fingerprints}
        self.dtls_role = _mediasoup_dtls_role(role)
        self._maybe_start_dtls()

    async def restart_ice(self) -> dict[str, Any]:
        """New ICE credentials; the previous ones stay valid (aiortc clients never adopt new ones)."""
        self._check_open()
        self.ice.add_credentials(IceCredentials.generate())
        if self._webrtc_server is not None:
            self._webrtc_server.add_ufrag(self.ice.credentials.username_fragment, self)
        return self.ice_parameters

    # ---- datagrams in -----------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self._demux(data, addr)
        except Exception:
            self._contain_error(len(data), addr)

    def _receive_rtp_from_receiver(self, packet: bytes) -> None:
        """An unprotected RTP packet the C receiver left to Python."""
        try:
            self._receive_rtp(packet)
        except Exception:
            self._contain_error(len(packet), self.ice_selected_tuple)

    def _contain_error(self, size: int, addr: Address | None) -> None:
        # A bug here is contained to this transport: it is closed cleanly
        # and its peer told; the room and the other transports go on.
        self.drops["internal-error"] += 1
        logger.exception(
            "transport %s (peer %s): error handling a %d-byte datagram from %s; closing it",
            self.id,
            self.app_data.get("peerId"),
            size,
            addr,
            extra=self.log_extra,
        )
        self.close(reason="error")

    def _demux(self, data: bytes, addr: Address) -> None:
        if self.closed or not data:
            return
        self.bytes_received += len(data)
        first = data[0]
        if 127 < first < 192:
            if addr not in self._valid_addresses:
                self.drops["rtp-from-unverified-address"] += 1
                return
            if self._rx_srtp is None:
                self.drops["srtp-not-ready"] += 1
                return
            if len(data) > 1 and 191 < data[1] < 224:
                self._receive_srtcp(data)
            else:
                self._receive_srtp(data)
        elif first < 4:
            self._receive_stun(data, addr)
        elif 19 < first < 64:
            if addr not in self._valid_addresses:
                self.drops["dtls-from-unverified-address"] += 1
            elif not self._dtls.feed(data):
                self.drops["dtls-queue-full"] += 1
        else:
            self.drops["unknown-packet"] += 1

    def _receive_srtp(self, data: bytes) -> None:
        assert self._rtp_in is not None
        try:
            packet = self._rtp_in.unprotect(data)
        except (pylibsrtp.Error, ValueError):
            self.drops["srtp-unprotect-failed"] += 1
            return
        self._receive_rtp(packet)

    def _receive_rtp(self, packet: bytes) -> None:
        if len(packet) < 12:
            self.drops["malformed-rtp"] += 1
            return
        self.rtp_packets_received += 1
        ssrc = _U32.unpack_from(packet, 8)[0]
        producer = self._producers_by_ssrc.get(ssrc)
        if producer is None:
            producer = self._learn_ssrc(packet, ssrc)
            if producer is None:
                self.drops["unknown-ssrc"] += 1
                return
        now = time.monotonic()
        self.last_ice_activity = now
        try:
            producer.receive_rtp(packet, now)
        except Exception as error:
            producer.fail(error)

    def _route_streams(self, producer: Producer) -> None:
        self._fast.route(producer)

    def _unroute_streams(self, producer: Producer) -> None:
        self._fast.unroute(producer)

    def _learn_ssrc(self, packet: bytes, ssrc: int) -> Producer | None:
        """Map an unsignaled SSRC to a producer through its MID header extension."""
        try:
            csrc_end, ext_start, ext_end, _ = header_bounds(packet)
        except ValueError:
            return None
        if ext_end <= ext_start or packet[csrc_end : csrc_end + 2] != b"\xbe\xde":
            return None
        elements = iter_one_byte_extensions(packet, ext_start, ext_end)
        for producer in self.producers.values():
            mid = producer.rtp_parameters.mid
            if mid is None:
                continue
            for ext_id, start, end in elements:
                if (
                    ext_id == producer.mid_extension_id
                    and packet[start:end] == mid.encode()
                    and producer.learn_ssrc(ssrc, packet[1] & 0x7F)
                ):
                    self._producers_by_ssrc[ssrc] = producer
                    self._route_streams(producer)
                    return producer
        return None

    def _receive_srtcp(self, data: bytes) -> None:
        assert self._rx_srtp is not None
        try:
            packet = self._rx_srtp.unprotect_rtcp(data)
        except (pylibsrtp.Error, ValueError):
            self.drops["srtcp-unprotect-failed"] += 1
            return
        now = time.monotonic()
        self.last_ice_activity = now
        self._receive_rtcp(packet, now)

    def _receive_stun(self, data: bytes, addr: Address) -> None:
        outcome = self.ice.handle(data, addr)
        if outcome.response is not None:
            self._sendto(outcome.response, addr)
        if outcome.verdict is not StunVerdict.VALID:
            if outcome.verdict is not StunVerdict.IGNORED:
                self.drops[f"stun-{outcome.verdict.value}"] += 1
            return
        self.last_ice_activity = time.monotonic()
        if addr not in self._valid_addresses:
            self._valid_addresses.add(addr)
            if self._webrtc_server is not None:
                self._webrtc_server.add_address(addr, self)
        if self.ice_state == "disconnected":
            self._set_ice_state("completed")
        if outcome.nominated or self.ice_selected_tuple is None:
            if addr != self.ice_selected_tuple:
                self.ice_selected_tuple = addr
                logger.info(
                    "transport %s (peer %s): ICE selected %s:%s%s",
                    self.id,
                    self.app_data.get("peerId"),
                    addr[0],
                    addr[1],
                    " over TCP" if len(addr) == 3 else "",
                    extra=self.log_extra,
                )
                self.emit("iceselectedtuplechange", addr)
            self._set_ice_state("completed" if outcome.nominated else "connected")
            self._maybe_start_dtls()

    def _set_ice_state(self, state: str) -> None:
        if state != self.ice_state:
            self.ice_state = state
            self.notify(Event.ICE_STATE_CHANGE, state)

    # ---- DTLS --------------------------------------------------------------

    def _maybe_start_dtls(self) -> None:
        if (
            self._dtls_task is None
            and self._remote_dtls is not None
            and self.ice_selected_tuple is not None
            and not self.closed
        ):
            self._dtls_task = asyncio.create_task(self._run_dtls())

    async def _run_dtls(self) -> None:
        assert self._remote_dtls is not None
        assert self.dtls_role is not None
        self._set_dtls_state("connecting")
        try:
            ok = await self._dtls.start(self.dtls_role, self._remote_dtls["fingerprints"])
        except Exception:
            logger.exception("transport %s: DTLS handshake raised", self.id, extra=self.log_extra)
            ok = False
        if self.closed:
            return
        if not ok:
            logger.warning("transport %s: DTLS handshake failed", self.id, extra=self.log_extra)
            self._set_dtls_state("failed")
            self.close(reason="dtls-failed")
            return
        self._rx_srtp = self._dtls.rx_srtp
        self._tx_srtp = self._dtls.tx_srtp
        assert self._rx_srtp is not None
        assert self._tx_srtp is not None
        # RTP goes through the fast codec; RTCP (rare) through pylibsrtp's API.
        self._rtp_in = SrtpCodec(self._rx_srtp)
        self._rtp_out = SrtpCodec(self._tx_srtp)
        self._refresh_native_sender()
        self._set_dtls_state("connected")
        self._dtls.on_state_change(self._on_dtls_state)
        if self._sctp is not None:
            await self._sctp.start(
                RTCSctpCapabilities(maxMessageSize=self._sctp_settings.max_message_size), SCTP_PORT
            )
        # Consumers may have started (on a keyframe) before we could deliver:
        # each starts over, video from a keyframe it asks for now.
        for consumer in self.consumers.values():
            consumer.on_transport_connected()

    def _on_dtls_state(self, state: str) -> None:
        if state in ("closed", "failed") and not self.closed:
            self._set_dtls_state(state)
            self.close(reason=f"dtls-{state}")

    def _set_dtls_state(self, state: str) -> None:
        if state != self.dtls_state:
            self.dtls_state = state
            self.notify(Event.DTLS_STATE_CHANGE, state)

    # ---- datagrams out ------------------------------------------------------

    def _sendto(self, data: bytes, addr: Address) -> None:
        if len(addr) == 3:  # an ICE-TCP connection (see tcp.tcp_key)
            if self._tcp_send is None or not self._tcp_send(addr, data):
                self.drops["send-failed"] += 1
                return
        elif self._endpoint is None:
            return
        else:
            try:
                self._endpoint.sendto(data, addr)
            except OSError:  # a full buffer or an unreachable peer: drop, never block
                self.drops["send-failed"] += 1
                return
        self.bytes_sent += len(data)

    def _send_datagram(self, data: bytes) -> None:
        if self.ice_selected_tuple is not None:
            self._sendto(data, self.ice_selected_tuple)

    def send_rtp(self, packet: bytes) -> None:
        tx = self._rtp_out
        addr = self.ice_selected_tuple
        if tx is None or addr is None:
            return
        try:
            protected = tx.protect(packet)
        except (pylibsrtp.Error, ValueError):
            self.drops["srtp-protect-failed"] += 1
            return
        self.rtp_packets_sent += 1
        self._sendto(protected, addr)

    def send_rtp_fields(
        self, b0: int, b1: int, seq: int, timestamp: int, ssrc: int, tail: bytes
    ) -> None:
        """``send_rtp(header(b0, b1, seq, timestamp, ssrc) + tail)`` without building
        the packet: the header and ``tail`` go straight into the SRTP buffer, which
        is protected in place and handed to the socket as is (the consumers' fast
        path; ``send_rtp`` stays for everything else)."""
        tx = self._rtp_out
        addr = self._ice_selected_tuple
        if tx is None or addr is None:
            return
        native = self._fast.sender
        if native is not None:
            native.send_fields(b0, b1, seq, timestamp, ssrc, tail)  # counted in C
            return
        protected = tx.protect_fields(b0, b1, seq, timestamp, ssrc, tail)
        if protected is None:
            self.drops["srtp-protect-failed"] += 1
            return
        self.rtp_packets_sent += 1
        if (self._tcp_send is not None and len(addr) == 3) or self._endpoint is None:
            # ICE-TCP frames it and may queue it: a copy, not a view of the buffer.
            self._sendto(bytes(protected), addr)
            return
        try:
            self._endpoint.sendto(protected, addr)
        except OSError:  # a full buffer or an unreachable peer: drop, never block
            self.drops["send-failed"] += 1
            return
        self.bytes_sent += len(protected)

    @property
    def ice_selected_tuple(self) -> Address | None:
        return self._ice_selected_tuple

    @ice_selected_tuple.setter
    def ice_selected_tuple(self, address: Address | None) -> None:
        self._ice_selected_tuple = address
        self._refresh_native_sender()

    def _refresh_native_sender(self) -> None:
        """Make the C sender (and point the C receiver) for the current keys and
        selected tuple, and bind the consumers to it, or to send_rtp_fields
        without it (no keys yet, no Address, ICE-TCP, closed, not built)."""
        self._fast.harvest(self)
        address = self._ice_selected_tuple if not self.closed else None
        sock = self._endpoint.socket if self._endpoint is not None else None
        native = self._fast.follow(self._rtp_in, self._rtp_out, address, sock)
        send = native.send_fields if native is not None else self.send_rtp_fields
        self.rtp_fields_sender = send
        for consumer in self.consumers.values():
            consumer.use_sender(send)

    def counters(self) -> Counter[str]:
        self._fast.harvest(self)
        return super().counters()

    def send_rtcp(self, packet: bytes) -> None:
        tx = self._tx_srtp
        addr = self.ice_selected_tuple
        if tx is None or addr is None:
            return
        try:
            protected = tx.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError):
            self.drops["srtcp-protect-failed"] += 1
            return
        self.rtcp_packets_sent += 1
        self._sendto(protected, addr)

    # ---- periodic RTCP ----------------------------------------------------

    def _check_liveness(self) -> bool:
        """ICE consent: mark a silent transport disconnected, and close it after ice_timeout."""
        if self.ice_state not in ("connected", "completed", "disconnected"):
            return False  # never connected: a transport may wait unused (no producer yet)
        last_activity = max(self.last_ice_activity, self._fast.last_activity)
        silence = time.monotonic() - last_activity
        if silence > self.ice_timeout:
            logger.info(
                "transport %s (peer %s): no ICE or media for %.0f s; closing it",
                self.id,
                self.app_data.get("peerId"),
                silence,
                extra=self.log_extra,
            )
            self.close(reason="ice-timeout")
            return True
        if silence > ICE_DISCONNECTED_AFTER and self.ice_state != "disconnected":
            self._set_ice_state("disconnected")
        elif silence <= ICE_DISCONNECTED_AFTER and self.ice_state == "disconnected":
            self._set_ice_state("completed")
        return False

    # ---- closing and stats -------------------------------------------------

    def close(self, reason: str | None = None) -> None:
        """Close the transport, its producers and consumers (their peers are told by the room).

        ``reason`` is given when the server closes it on its own (``serverclose``)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        # Nothing more goes out: its socket is about to close, and the OS may
        # give the descriptor number the C sender holds to another socket.
        self._rtp_out = None
        self._tx_srtp = None
        self._refresh_native_sender()
        self._close_children()
        self._set_ice_state("closed")
        self._set_dtls_state("closed")
        if self._dtls_task is not None:
            self._dtls_task.cancel()
        dtls = self._dtls
        sctp = self._sctp
        # A shared single-port socket stays open for the other transports.
        endpoint = self._endpoint if self._webrtc_server is None else None
        if self._tcp_listener is not None:
            self._tcp_listener.close()
        if self._webrtc_server is not None:
            self._webrtc_server.remove_transport(self)
        self._fast.close()

        async def stop_dtls() -> None:
            if sctp is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sctp.stop(), 1.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dtls.stop(), 1.0)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: just drop the socket
            loop = None
        if loop is not None:
            # The DTLS close_notify goes out in the task's first step; the socket
            # closes right behind it, so that its port is free again at once.
            loop.create_task(stop_dtls())
            if endpoint is not None:
                loop.call_soon(endpoint.close)
        elif endpoint is not None:
            endpoint.close()
        if reason is not None:
            self.notify(Event.SERVER_CLOSE, reason)
        self.emit_close()

    def _rtcp_ready(self) -> bool:
        return self._tx_srtp is not None

    def get_stats(self) -> list[dict[str, Any]]:
        self._fast.harvest(self)
        return [
            {
                "type": "webrtc-transport",
                "transportId": self.id,
                "iceState": self.ice_state,
                "iceSelectedTuple": (
                    {
                        "remoteIp": self.ice_selected_tuple[0],
                        "remotePort": self.ice_selected_tuple[1],
                    }
                    if self.ice_selected_tuple
                    else None
                ),
                "dtlsState": self.dtls_state,
                "bytesReceived": self.bytes_received,
                "bytesSent": self.bytes_sent,
                "rtpPacketsReceived": self.rtp_packets_received,
                "rtpPacketsSent": self.rtp_packets_sent,
                "rtcpPacketsReceived": self.rtcp_packets_received,
                "rtcpPacketsSent": self.rtcp_packets_sent,
                "availableOutgoingBitrate": self.available_outgoing_bitrate,
                "droppedPackets": dict(self.drops),
                "sctpState": self._sctp.state if self._sctp is not None else None,
            }
        ]
