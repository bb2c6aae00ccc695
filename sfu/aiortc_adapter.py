"""Every touch of aiortc's and aioice's private API by the server and its
clients (``sfu.client``) lives here, and only here. The benchmark's own
touches, for its load clients, are in ``sfu_bench/aiortc_hooks.py``.

aiortc and aioice are pinned to exact versions in pyproject.toml because of
this module (and of the bench's). Each touch says why it is needed:

- ``RTCDtlsTransport`` does the DTLS handshake and the DTLS-SRTP key export
  over a duck-typed ICE transport (``_recv``/``_send``/``role``), since the
  server owns its UDP socket and its ICE-lite responder (aioice has no lite
  mode). We set the DTLS role with ``_set_role`` (mediasoup signals the role,
  aiortc would infer it from the ICE role), and take the SRTP sessions it
  built (``_rx_srtp``/``_tx_srtp``) so that RTP is protected and unprotected
  on our raw path instead of aiortc's ``RtpPacket`` path.
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
- pylibsrtp 1.0.0 (pinned): :class:`SrtpCodec` calls its cffi binding
  (``lib.srtp_protect``/``srtp_unprotect``) with the session's own buffer and
  one reused length cell. ``Session.protect`` allocates a cffi ``int *`` and
  re-checks types on every call: 5.4 µs against 3.7 µs for a 1200-byte packet,
  measured side by side; this is the per-forwarded-packet hot path.
  :meth:`SrtpCodec.protect_fields` goes one step further: it writes the
  consumer's header and the shared tail straight into that session buffer,
  protects in place and hands back a memoryview of it for ``sendto``, so
  that a forwarded packet costs no ``bytes`` object at all (no header+tail
  concatenation, no copy of the protected packet out of the buffer).
  :meth:`SrtpCodec.native_sender` hands the addresses of ``srtp_protect`` and
  of the session's ``srtp_t`` (``Session._srtp``) to our optional C extension
  ``sfu.media._native``, which then writes, protects and sends a consumer's
  packet in one call: about 13 µs per forwarded packet against 25 µs for the
  same loop through cffi and ``socket.sendto``, measured side by side on
  loopback. libsrtp still does the crypto, on pylibsrtp's own session.
  :meth:`SrtpCodec.native_session` and :func:`native_unprotect_function` do
  the same for ``srtp_unprotect``: the C receive path (``RtpReceiver``)
  unprotects in-order packets with the incoming session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import aioice.ice
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint, RTCDtlsParameters
from aiortc.rtcdtlstransport import RTCDtlsTransport as _AiortcDtlsTransport
from pylibsrtp import Session

__all__ = [
    "DtlsSession",
    "RTCCertificate",
    "generate_certificate",
    "restrict_host_addresses",
]

# Bounded queue of DTLS datagrams waiting for the handshake task.
_DTLS_QUEUE_SIZE = 64


_RTP_HEADER = struct.Struct("!BBHII")

# The optional C extension (see native_sender); SFU_NATIVE_SEND=0 turns it off,
# for a side-by-side measure of what it buys.
try:
    from .media import _native
except ImportError:  # built without a C compiler: the Python path does the same
    _native = None  # type: ignore[assignment]
if os.environ.get("SFU_NATIVE_SEND", "1") == "0":
    _native = None  # type: ignore[assignment]

NATIVE_SEND = _native is not None
# The C receive path (RtpReceiver, ProducerPath): on with the C send unless
# SFU_NATIVE_RECEIVE=0, for a side-by-side measure of what it buys.
# (An older build without it, left by an editable install, falls back too.)
NATIVE_RECEIVE = (
    NATIVE_SEND
    and hasattr(_native, "RtpReceiver")
    and os.environ.get("SFU_NATIVE_RECEIVE", "1") != "0"
)
if TYPE_CHECKING:
    from .media._native import SrtpSender as NativeSender
# What a native send returns when the packet was not sent (see _native.c);
# the same values when the extension is not there, for callers that compare.
NATIVE_PROTECT_FAILED = _native.PROTECT_FAILED if _native is not None else -1
NATIVE_SEND_FAILED = _native.SEND_FAILED if _native is not None else -2


class SrtpCodec:
    """Fast SRTP protect/unprotect of RTP on a pylibsrtp ``Session`` (see above)."""

    def __init__(self, session: Session) -> None:
        from pylibsrtp import SRTP_MAX_TRAILER_LEN
        from pylibsrtp._binding import ffi, lib

        self._session = session  # keeps the srtp_t and its buffer alive
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        # Writable view of the session buffer: in-place header writes and
        # zero-copy slices of the protected packet.
        self._view = memoryview(session._buffer)
        self._pack_header = _RTP_HEADER.pack_into
        self._length = ffi.new("int *")
        self._srtp_protect = lib.srtp_protect
        self._srtp_unprotect = lib.srtp_unprotect
        self._max_protect = len(session._buffer) - SRTP_MAX_TRAILER_LEN
        self._max_unprotect = len(session._buffer)

    def protect(self, packet: bytes) -> bytes:
        size = len(packet)
        if size > self._max_protect:
            raise ValueError("packet is too long")
        self._buffer[0:size] = packet
        self._length[0] = size
        if self._srtp_protect(self._srtp, self._cdata, self._length):
            raise ValueError("SRTP protect failed")
        return self._buffer[0 : self._length[0]]

    def protect_fields(
        self, b0: int, b1: int, seq: int, timestamp: int, ssrc: int, tail: bytes
    ) -> memoryview | None:
        """Protect the RTP packet ``header(b0, b1, seq, timestamp, ssrc) + tail``
        in the session buffer; its protected bytes as a view of that buffer
        (valid until the next call on this codec or session), or None if it
        is too long or libsrtp refused it."""
        size = 12 + len(tail)
        if size > self._max_protect:
            return None
        view = self._view
        self._pack_header(view, 0, b0, b1, seq, timestamp, ssrc)
        view[12:size] = tail
        length = self._length
        length[0] = size
        if self._srtp_protect(self._srtp, self._cdata, length):
            return None
        return view[: length[0]]

    def native_sender(self, sock: socket.socket, address: tuple) -> NativeSender | None:
        """An ``SrtpSender`` (sfu/media/_native.c) whose ``send_fields(b0, b1, seq,
        timestamp, ssrc, tail)`` protects with this session and sends from
        ``sock`` to ``address`` in one C call, returning the bytes sent or
        NATIVE_PROTECT_FAILED / NATIVE_SEND_FAILED and counting each; None when
        the extension is not there or the address is not a plain IPv4/IPv6 one.

        The caller must drop it before ``sock`` closes: it holds the file
        descriptor number, which the OS may give to another socket."""
        if _native is None or not (len(address) == 2 or (len(address) == 4 and address[3] == 0)):
            return None
        from pylibsrtp._binding import ffi, lib

        return _native.SrtpSender(
            int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect"))),
            int(ffi.cast("uintptr_t", self._srtp)),
            sock.fileno(),
            address[0],
            address[1],
            (self._session, sock),
        )

    def native_session(self) -> tuple[int, Session]:
        """The address of the session's ``srtp_t``, and the object that keeps it
        alive, for the C receive path (``RtpReceiver.set_session``)."""
        from pylibsrtp._binding import ffi

        return int(ffi.cast("uintptr_t", self._srtp)), self._session

    def unprotect(self, packet: bytes) -> bytes:
        size = len(packet)
        if size > self._max_unprotect:
            raise ValueError("packet is too long")
        self._buffer[0:size] = packet
        self._length[0] = size
        if self._srtp_unprotect(self._srtp, self._cdata, self._length):
            raise ValueError("SRTP unprotect failed (authentication, replay or format)")
        return self._buffer[0 : self._length[0]]


def native_unprotect_function() -> int:
    """The address of pylibsrtp's ``srtp_unprotect``, for ``RtpReceiver``."""
    from pylibsrtp._binding import ffi, lib

    return int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect")))


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

    async def stop(self) -> None:
        self._ice.close()
        with contextlib.suppress(Exception):
            await self._dtls.stop()


def route_rtx_to_receiver(receiver: Any, rtx_ssrc: int) -> None:
    """Make aiortc deliver RTX packets of ``rtx_ssrc`` to ``receiver`` (an RTCRtpReceiver)."""
    router = getattr(receiver.transport, "_rtp_router", None)
    if router is not None:
        router.ssrc_table[rtx_ssrc] = receiver


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
