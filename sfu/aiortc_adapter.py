"""Every touch of aiortc's, aioice's and pylibsrtp's private API by the server
and its clients (``sfu.client``) lives here, and only here. The benchmark's own
touches, for its load clients, are in ``sfu_bench/aiortc_hooks.py``.

aiortc, aioice and pylibsrtp are pinned to exact versions in pyproject.toml
because of this module (and of the bench's). Each touch says why it is needed:

- ``RTCDtlsTransport`` does the DTLS handshake and the DTLS-SRTP key export
  over a duck-typed ICE transport (``_recv``/``_send``/``role``), since the
  server owns its UDP socket and its ICE-lite responder (aioice has no lite
  mode). We set the DTLS role with ``_set_role`` (mediasoup signals the role,
  aiortc would infer it from the ICE role), and take the SRTP sessions it
  built (``_rx_srtp``/``_tx_srtp``) so that RTP is protected and unprotected
  on our raw path instead of aiortc's ``RtpPacket`` path.
- ``RTCSctpTransport`` (data channels) is built on the ``RTCDtlsTransport``
  this module drives over our duck ICE transport: aiortc hands decrypted
  application data to the SCTP transport itself once DTLS is up. The
  association's stream counts (``_outbound_streams_count``,
  ``_inbound_streams_max``) are set to the configured number, so that its
  INIT says what ``sctpParameters {OS, MIS}`` told the client (aiortc always
  offers 65535). Everything else (negotiated ``RTCDataChannel``s per stream id,
  ``bufferedAmount``) is aiortc's public API. Its ``_handle_data`` is wrapped:
  aiortc asserts on some malformed packets (an INIT bundled with other
  chunks), which would end the DTLS transport's read loop; a hostile packet
  is dropped and counted instead.
- :func:`send_raw_sctp` (tests only) sends bytes through a client's DTLS
  session (``RTCDtlsTransport._send_data``): hostile SCTP packets.
- :func:`stop_sctp_reading` (tests only) makes a client's SCTP association
  ignore what arrives (``RTCSctpTransport._handle_data``): a reader that
  stopped, which sends no SACKs, so the server's send buffer toward it fills.
- ``RTCDtlsTransport._rtp_router.ssrc_table``: aiortc 1.16 registers only a
  receiver's media SSRC with its RTP router, and routes unknown SSRCs by
  payload type alone. With two video receivers sharing the RTX payload type,
  every retransmission is discarded. :func:`route_rtx_to_receiver` registers
  the RTX SSRC too (used by ``sfu.client``).
- pymediasoup 1.5.0 (also pinned) recycles a closed m-section for a new
  consumer, under a new mid and possibly another kind; aiortc 1.16 then
  fails with "Media sections in answer do not match offer". A bot in a room
  where people come and go hits this. :func:`disable_media_section_recycling`
  makes its RemoteSdp append new sections instead (``RemoteSdp`` internals).
- ``aioice.ice.get_host_addresses`` is replaced to restrict a *client's* ICE
  gathering to given addresses (tests and benchmarks stay on loopback; aioice
  skips 127.0.0.1 otherwise).
- pylibsrtp 1.0.0 (pinned): the fast path (``sfu.media.fastpath``) protects
  and unprotects RTP with libsrtp's own functions on pylibsrtp's sessions,
  bypassing ``Session.protect``/``unprotect``, which allocate a cffi ``int *``
  and re-check types on every call (5.4 µs against 3.7 µs for a 1200-byte
  packet, measured side by side; this is the per-forwarded-packet hot path).
  :func:`srtp_internals` hands it a session's ``srtp_t`` (``Session._srtp``),
  buffer (``_cdata``/``_buffer``) and the cffi binding's
  ``lib.srtp_protect``/``srtp_unprotect``; :func:`srtp_function_addresses`
  and ``SrtpInternals.srtp_address`` are the same as plain addresses, for the
  optional C extension ``sfu.media._native``. libsrtp still does the crypto,
  on pylibsrtp's own sessions, so both paths share their replay state and
  rollover counters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import aioice.ice
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint, RTCDtlsParameters
from aiortc.rtcdtlstransport import RTCDtlsTransport as _AiortcDtlsTransport
from aiortc.rtcsctptransport import RTCSctpTransport
from pylibsrtp import Session

__all__ = [
    "DtlsSession",
    "RTCCertificate",
    "generate_certificate",
    "restrict_host_addresses",
]

# Bounded queue of DTLS datagrams waiting for the handshake task.
_DTLS_QUEUE_SIZE = 64


class SrtpInternals(NamedTuple):
    """What the fast path (``sfu.media.fastpath.SrtpCodec``) uses of one pylibsrtp session."""

    session: Session  # keeps everything below alive
    srtp: Any  # the session's srtp_t
    cdata: Any  # its packet buffer (char[1500]), as libsrtp takes it
    buffer: Any  # the same buffer, writable from Python (a cffi buffer)
    length: Any  # a fresh int * cell: the packet length libsrtp reads and writes
    protect: Callable[[Any, Any, Any], int]  # libsrtp's srtp_protect(srtp, cdata, length)
    unprotect: Callable[[Any, Any, Any], int]  # srtp_unprotect, the same way
    srtp_address: int  # the srtp_t's address, for the C extension
    max_trailer: int  # the most bytes protect may add (tag and MKI)


def srtp_internals(session: Session) -> SrtpInternals:
    """The private parts of ``session`` that the fast path calls libsrtp with."""
    from pylibsrtp import SRTP_MAX_TRAILER_LEN
    from pylibsrtp._binding import ffi, lib

    srtp = session._srtp[0]
    return SrtpInternals(
        session=session,
        srtp=srtp,
        cdata=session._cdata,
        buffer=session._buffer,
        length=ffi.new("int *"),
        protect=lib.srtp_protect,
        unprotect=lib.srtp_unprotect,
        srtp_address=int(ffi.cast("uintptr_t", srtp)),
        max_trailer=SRTP_MAX_TRAILER_LEN,
    )


def srtp_function_addresses() -> tuple[int, int]:
    """The addresses of pylibsrtp's ``srtp_protect`` and ``srtp_unprotect``, for the C extension."""
    from pylibsrtp._binding import ffi, lib

    return (
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect"))),
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect"))),
    )


def generate_certificate() -> RTCCertificate:
    return RTCCertificate.generateCertificate()


def certificate_fingerprints(certificate: RTCCertificate) -> list[dict[str, str]]:
    """mediasoup-shaped fingerprints, sha-256 last (mediasoup-client uses the last)."""
    fingerprints = [
        {"algorithm": f.algorithm, "value": f.value} for f in certificate.getFingerprints()
    ]
    fingerprints.sort(key=lambda f: f["algorithm"] == "sha-256")
    return fingerprints


class _DuckIceTransport:
    """The part of RTCIceTransport that RTCDtlsTransport calls."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self.role = "controlled"  # unused: the DTLS role is set explicitly
        self._send_datagram = send
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(_DTLS_QUEUE_SIZE)

    def feed(self, data: bytes) -> bool:
        """Queue one DTLS datagram; False if the queue is full (datagram dropped)."""
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def _recv(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            raise ConnectionError("transport closed")
        return data

    async def _send(self, data: bytes) -> None:
        self._send_datagram(data)


class DtlsSession:
    """DTLS handshake and DTLS-SRTP keys for one WebRtcTransport.

    ``send`` writes a datagram to the ICE-selected remote address. DTLS
    datagrams received on the socket go to :meth:`feed`.
    """

    def __init__(self, certificate: RTCCertificate, send: Callable[[bytes], None]) -> None:
        self._ice = _DuckIceTransport(send)
        self._dtls = _AiortcDtlsTransport(self._ice, [certificate])  # type: ignore[arg-type]
        self.rx_srtp: Session | None = None
        self.tx_srtp: Session | None = None
        self.role: str | None = None

    @property
    def state(self) -> str:
        return self._dtls.state

    def on_state_change(self, callback: Callable[[str], None]) -> None:
        self._dtls.on("statechange", lambda: callback(self._dtls.state))

    def feed(self, data: bytes) -> bool:
        return self._ice.feed(data)

    async def start(self, role: str, remote_fingerprints: Sequence[dict[str, str]]) -> bool:
        """Run the handshake in ``role`` ('client' or 'server'); True once SRTP is keyed."""
        self.role = role
        self._dtls._set_role(role)
        parameters = RTCDtlsParameters(
            fingerprints=[
                RTCDtlsFingerprint(algorithm=f["algorithm"], value=f["value"])
                for f in remote_fingerprints
            ]
        )
        await self._dtls.start(parameters)
        if self._dtls.state != "connected":
            return False
        self.rx_srtp = self._dtls._rx_srtp
        self.tx_srtp = self._dtls._tx_srtp
        return True

    def sctp_transport(
        self, num_streams: int, on_malformed: Callable[[], None]
    ) -> RTCSctpTransport:
        """An SCTP association (port 5000, as mediasoup) over this DTLS session,
        offering ``num_streams`` streams each way; start it once DTLS is connected.
        ``on_malformed`` is called for each SCTP packet aiortc failed on (dropped)."""
        sctp = RTCSctpTransport(self._dtls, port=5000)
        # aiortc offers 65535 streams each way in its INIT: make it offer what
        # the client was told in sctpParameters {OS, MIS}.
        sctp._outbound_streams_count = num_streams
        sctp._inbound_streams_max = num_streams
        handle_data = sctp._handle_data

        async def contained(data: bytes) -> None:
            # An exception here would end aiortc's DTLS read loop (the transport).
            try:
                await handle_data(data)
            except Exception:
                on_malformed()

        sctp._handle_data = contained  # type: ignore[method-assign]
        return sctp

    async def stop(self) -> None:
        self._ice.close()
        with contextlib.suppress(Exception):
            await self._dtls.stop()


def route_rtx_to_receiver(receiver: Any, rtx_ssrc: int) -> None:
    """Make aiortc deliver RTX packets of ``rtx_ssrc`` to ``receiver`` (an RTCRtpReceiver)."""
    router = getattr(receiver.transport, "_rtp_router", None)
    if router is not None:
        router.ssrc_table[rtx_ssrc] = receiver


def stop_sctp_reading(handler: Any) -> None:
    """Make a pymediasoup aiortc handler's SCTP association drop everything it
    receives, acknowledging nothing (tests: a stalled data channel reader)."""
    sctp = handler.pc.sctp
    if sctp is None:
        raise RuntimeError("this transport has no SCTP association yet")

    async def ignore(data: bytes) -> None:
        return None

    sctp._handle_data = ignore


async def send_raw_sctp(handler: Any, packet: bytes) -> None:
    """Send ``packet`` as DTLS application data on a pymediasoup aiortc handler's
    transport, as if it were an SCTP packet (tests: hostile SCTP at the server)."""
    sctp = handler.pc.sctp
    if sctp is None:
        raise RuntimeError("this transport has no SCTP association yet")
    await sctp.transport._send_data(packet)


def disable_media_section_recycling(handler: Any) -> None:
    """Make a pymediasoup aiortc handler add a new m-section for every consumer."""
    from pymediasoup.handlers.sdp.media_section import OfferMediaSection

    remote_sdp = handler.remoteSdp
    recycling_receive = remote_sdp.receive

    def receive(mid: str, kind: str, offerRtpParameters: Any, streamId: str, trackId: str) -> None:
        if str(mid) in remote_sdp._midToIndex:  # plan-B reuse of the same mid
            recycling_receive(mid, kind, offerRtpParameters, streamId, trackId)
            return
        remote_sdp._addMediaSection(
            OfferMediaSection(
                iceParameters=remote_sdp._iceParameters,
                iceCandidates=remote_sdp._iceCandidates,
                dtlsParameters=remote_sdp._dtlsParameters,
                plainRtpParameters=remote_sdp._plainRtpParameters,
                planB=remote_sdp._planB,
                mid=mid,
                kind=kind,
                offerRtpParameters=offerRtpParameters,
                streamId=streamId,
                trackId=trackId,
            )
        )

    remote_sdp.receive = receive


@contextlib.contextmanager
def restrict_host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Make aioice gather host candidates only on ``addresses`` (e.g. 127.0.0.1).

    Applies process-wide while the context is open: aioice reads the module
    function at gathering time.
    """
    original = aioice.ice.get_host_addresses
    chosen = list(addresses)

    def only_given(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = only_given
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def set_host_addresses(addresses: Sequence[str] | None) -> None:
    """Non-scoped form of :func:`restrict_host_addresses` for long-lived clients."""
    if addresses is None:
        return
    chosen = list(addresses)

    def only_given(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = only_given
