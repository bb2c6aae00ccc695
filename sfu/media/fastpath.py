"""The fast path's one home: the optional C extension, its switches, the SRTP
codec of the hot path, and the per-transport object that wires them up.

Forwarding one RTP packet is the server's hot path. Three things make it fast,
each with a Python twin that does the same (the reference, and what runs when
the C extension ``sfu.media._native`` is not built or is switched off):

- :class:`SrtpCodec` protects and unprotects with libsrtp's own functions on
  pylibsrtp's session buffer (the private touch is in ``sfu.aiortc_adapter``,
  which says why). :meth:`SrtpCodec.protect_fields` writes a consumer's header
  and the shared tail straight into that buffer, protects in place and hands
  back a view of it for ``sendto``: a forwarded packet costs no ``bytes``.
- the C send (``NATIVE_SEND``): a consumer's rewrite (``new_rewriter``,
  ``send_all_function``) and ``SrtpSender``, which writes, protects and sends
  in one call: about 13 µs per forwarded packet against 25 µs for the same
  loop through cffi and ``socket.sendto``, measured side by side on loopback.
- the C receive (``NATIVE_RECEIVE``): ``RtpReceiver`` reads a transport's
  socket and takes the common in-order packet from ``recvfrom`` to every
  consumer's ``sendto`` (``ProducerPath``); everything else goes to Python.

``SFU_NATIVE_SEND=0`` turns the extension off (and with it the C receive),
``SFU_NATIVE_RECEIVE=0`` only the C receive, for a side-by-side measure of
what each buys (:func:`native_switches`).

:class:`TransportFastPath` is one WebRtcTransport's part of it: its C receiver
(its socket's reader, or a child of the shared socket's in single-port mode),
the producers' streams routed into it, its C sender for the current keys and
selected tuple, and the counters both keep for the transport.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..aiortc_adapter import srtp_function_addresses, srtp_internals
from .rtp_rewriter import RtpRewriter, SendAll, send_all
from .udp import Address, DatagramHandler

if TYPE_CHECKING:
    from pylibsrtp import Session

    from ._native import ProducerPath, RtpReceiver
    from ._native import SrtpSender as NativeSender
    from .producer import Producer
    from .transport import Transport

__all__ = [
    "NATIVE_PROTECT_FAILED",
    "NATIVE_RECEIVE",
    "NATIVE_SEND",
    "NATIVE_SEND_FAILED",
    "STREAM_FIELDS",
    "SrtpCodec",
    "StreamState",
    "TransportFastPath",
    "native",
    "native_switches",
    "new_producer_path",
    "new_rewriter",
    "new_socket_reader",
    "send_all_function",
]


def native_switches(environ: Mapping[str, str] = os.environ) -> tuple[bool, bool]:
    """Whether the C send and the C receive may run: ``SFU_NATIVE_SEND=0`` turns
    both off, ``SFU_NATIVE_RECEIVE=0`` the receive only."""
    send = environ.get("SFU_NATIVE_SEND", "1") != "0"
    receive = send and environ.get("SFU_NATIVE_RECEIVE", "1") != "0"
    return send, receive


def _load_extension() -> ModuleType | None:
    try:
        from . import _native
    except ImportError:  # built without a C compiler: the Python path does the same
        return None
    return _native


_SEND_ON, _RECEIVE_ON = native_switches()
# The extension, or None when it is not built or switched off.
native: ModuleType | None = _load_extension() if _SEND_ON else None
NATIVE_SEND = native is not None
# (An older build without the receive path, left by an editable install, falls back too.)
NATIVE_RECEIVE = NATIVE_SEND and _RECEIVE_ON and hasattr(native, "RtpReceiver")
# The receive side's types, fixed here: the send side reads ``native`` at each
# use, so that a test can switch it alone.
_receive_types: ModuleType | None = native if NATIVE_RECEIVE else None
# What a native send returns when the packet was not sent (see native/send.c);
# the same values when the extension is not there, for callers that compare.
NATIVE_PROTECT_FAILED: int = native.PROTECT_FAILED if native is not None else -1
NATIVE_SEND_FAILED: int = native.SEND_FAILED if native is not None else -2


# ---- the receive statistics' fields, declared once ---------------------------

# The fields of one incoming stream's receive statistics (rtp_stream.RtpStreamRecv).
# With the C receive path they live in a C struct that both paths update
# (native/stream_state.c); without it, in slots made from this tuple. The
# C type's members and the _native.pyi stub's are checked against it
# (tests/unit/test_stream_fields.py).
STREAM_FIELDS = (
    "ssrc",
    "clock_rate",
    "started",
    "base_seq",
    "max_seq",
    "cycles",
    "received",
    "bytes_received",
    "expected_prior",
    "received_prior",
    "transit",
    "jitter",
    "missing",
    "last_sr_ntp",
    "last_sr_rtp",
    "last_sr_arrival",
    "last_packet_time",
    "fraction_lost",
)


class PythonStreamState:
    """The stream fields without the C extension (typed in _native.pyi)."""

    __slots__ = STREAM_FIELDS


if TYPE_CHECKING:
    from ._native import RtpStreamState as StreamState
elif _receive_types is not None:
    StreamState = _receive_types.RtpStreamState
else:
    StreamState = PythonStreamState


# ---- SRTP on the hot path -------------------------------------------------------

_RTP_HEADER = struct.Struct("!BBHII")


class SrtpCodec:
    """Fast SRTP protect/unprotect of RTP on a pylibsrtp ``Session`` (see above)."""

    def __init__(self, session: Session) -> None:
        internals = srtp_internals(session)
        self._internals = internals  # keeps the srtp_t and its buffer alive
        self._srtp = internals.srtp
        self._cdata = internals.cdata
        self._buffer = internals.buffer
        # Writable view of the session buffer: in-place header writes and
        # zero-copy slices of the protected packet.
        self._view = memoryview(internals.buffer)
        self._pack_header = _RTP_HEADER.pack_into
        self._length = internals.length
        self._srtp_protect = internals.protect
        self._srtp_unprotect = internals.unprotect
        self._max_protect = len(internals.buffer) - internals.max_trailer
        self._max_unprotect = len(internals.buffer)

    def protect(self, packet: bytes) -> bytes:
        size = len(packet)
        if size > self._max_protect:
            raise ValueError("packet is too long")
        self._buffer[0:size] = packet
        self._length[0] = size
        if self._srtp_protect(self._srtp, self._cdata, self._length):
            raise ValueError("SRTP protect failed")
        return self._buffer[0 : self._length[0]]  # type: ignore[no-any-return]

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

    def native_sender(self, sock: socket.socket, address: Address) -> NativeSender | None:
        """An ``SrtpSender`` (sfu/media/native/send.c) whose ``send_fields(b0, b1,
        seq, timestamp, ssrc, tail)`` protects with this session and sends from
        ``sock`` to ``address`` in one C call, returning the bytes sent or
        NATIVE_PROTECT_FAILED / NATIVE_SEND_FAILED and counting each; None when
        the extension is not there or the address is not a plain IPv4/IPv6 one.

        The caller must drop it before ``sock`` closes: it holds the file
        descriptor number, which the OS may give to another socket."""
        if native is None or not (len(address) == 2 or (len(address) == 4 and address[3] == 0)):
            return None
        sender: NativeSender = native.SrtpSender(
            srtp_function_addresses()[0],
            self._internals.srtp_address,
            sock.fileno(),
            address[0],
            address[1],
            (self._internals.session, sock),
        )
        return sender

    def native_session(self) -> tuple[int, Session]:
        """The address of the session's ``srtp_t``, and the object that keeps it
        alive, for the C receive path (``RtpReceiver.set_session``)."""
        return self._internals.srtp_address, self._internals.session

    def unprotect(self, packet: bytes) -> bytes:
        size = len(packet)
        if size > self._max_unprotect:
            raise ValueError("packet is too long")
        self._buffer[0:size] = packet
        self._length[0] = size
        if self._srtp_unprotect(self._srtp, self._cdata, self._length):
            raise ValueError("SRTP unprotect failed (authentication, replay or format)")
        return self._buffer[0 : self._length[0]]  # type: ignore[no-any-return]


def native_unprotect_function() -> int:
    """The address of pylibsrtp's ``srtp_unprotect``, for ``RtpReceiver``."""
    return srtp_function_addresses()[1]


# ---- what the media objects make -------------------------------------------------


def new_rewriter(ssrc: int) -> Any:
    """A consumer's rewrite: the C one when the extension is there, else the Python one."""
    if native is not None:
        return native.RtpRewriter(ssrc)
    return RtpRewriter(ssrc)


def send_all_function() -> SendAll:
    """The C send_all with the C rewriters, else the Python one."""
    if native is not None:
        c_send_all: SendAll = native.send_all
        return c_send_all
    return send_all


def new_producer_path(
    producer: Producer,
    pt_map: dict[int, int],
    ext_forward: dict[int, int],
    abs_send_time_id: int,
    audio_level_id: int,
    follow_up: Callable[..., None],
    fail: Callable[[BaseException], None],
) -> ProducerPath | None:
    """The C receive path's view of a producer (its mappings, and the consumer
    layouts it is given), or None when packets are received in Python."""
    if _receive_types is None:
        return None
    path: ProducerPath = _receive_types.ProducerPath(
        producer, pt_map, ext_forward, abs_send_time_id, audio_level_id, follow_up, fail
    )
    return path


def _no_rtp(packet: bytes) -> None:
    """A shared socket's reader has no keys of its own: never called."""


RtpHandler = Callable[[bytes], None]
SocketReaderFactory = Callable[[socket.socket], "RtpReceiver"]


def new_socket_reader(
    fd: int, on_datagram: DatagramHandler, on_rtp: RtpHandler = _no_rtp
) -> RtpReceiver:
    """An ``RtpReceiver``: the reader of socket ``fd`` (-1: a child of a shared
    socket's reader). What it does not take goes to ``on_datagram`` (whole
    datagrams) or ``on_rtp`` (unprotected RTP). Only when NATIVE_RECEIVE."""
    assert _receive_types is not None
    reader: RtpReceiver = _receive_types.RtpReceiver(
        fd, native_unprotect_function(), on_datagram, on_rtp
    )
    return reader


class TransportFastPath:
    """One WebRtcTransport's fast path: its C receiver and C sender (when built
    and on), which streams the receiver takes, and what both counted."""

    def __init__(self, on_datagram: DatagramHandler, on_rtp: RtpHandler) -> None:
        self._on_datagram = on_datagram
        self._on_rtp = on_rtp
        # The C receive path: this transport's socket reader, or (single-port
        # mode) a child of the shared socket's reader.
        self.receiver: RtpReceiver | None = None
        self._shared_reader: RtpReceiver | None = None
        # The consumers' send in C (SrtpCodec.native_sender), remade by follow().
        self.sender: NativeSender | None = None
        # What the receiver and the sender counted up to the last harvest.
        self._receiver_seen = (0, 0, 0, 0)
        self._sender_seen = (0, 0, 0, 0)

    # ---- the receiver ------------------------------------------------------------

    @property
    def reader_factory(self) -> SocketReaderFactory | None:
        """For ``UdpEndpoint.create_for_media``: what reads this transport's own
        socket in C, or None to read it in Python."""
        return self._make_reader if NATIVE_RECEIVE else None

    def _make_reader(self, sock: socket.socket) -> RtpReceiver:
        self.receiver = new_socket_reader(sock.fileno(), self._on_datagram, self._on_rtp)
        return self.receiver

    def share_reader(self, shared: RtpReceiver | None) -> None:
        """Single-port mode: the shared socket's reader (None: it is read in
        Python) reads this transport's RTP for it."""
        if shared is None:
            return
        self.receiver = new_socket_reader(-1, self._on_datagram, self._on_rtp)
        self._shared_reader = shared
        shared.add_child(self.receiver)

    def route(self, producer: Producer) -> None:
        """The producer's streams are taken on the C path (when both are there)."""
        receiver, path = self.receiver, producer.native_path
        if receiver is None or path is None:
            return
        for ssrc, stream in producer.streams.items():
            receiver.add_stream(ssrc, path, stream)

    def unroute(self, producer: Producer) -> None:
        if self.receiver is not None:
            for ssrc in producer.streams:
                self.receiver.remove_stream(ssrc)

    @property
    def last_activity(self) -> float:
        """time.monotonic() of the newest packet the C path took (0.0: none)."""
        return self.receiver.last_activity if self.receiver is not None else 0.0

    # ---- keys and the selected tuple ------------------------------------------------

    def follow(
        self,
        incoming: SrtpCodec | None,
        outgoing: SrtpCodec | None,
        address: Address | None,
        sock: socket.socket | None,
    ) -> NativeSender | None:
        """Follow the current keys and ICE selected tuple (None when unknown, or
        closed): the receiver takes that tuple's SRTP, and a new C sender sends
        to it from ``sock`` (none over ICE-TCP, which frames and queues: the
        Python path). Harvest first: the old sender's counters go with it."""
        receiver = self.receiver
        if receiver is not None:
            if incoming is not None and address is not None:
                receiver.set_session(*incoming.native_session())
                receiver.set_address(address if len(address) != 3 else None)
            else:
                receiver.set_session(0, None)
                receiver.set_address(None)
        sender = None
        if outgoing is not None and address is not None and len(address) != 3 and sock is not None:
            sender = outgoing.native_sender(sock, address)
        self.sender = sender
        self._sender_seen = (0, 0, 0, 0)
        return sender

    def harvest(self, transport: Transport) -> None:
        """Add what the C receiver and sender counted since the last harvest to
        ``transport``'s counters."""
        receiver = self.receiver
        if receiver is not None:
            before = self._receiver_seen
            counted = (
                receiver.bytes_received,
                receiver.rtp_packets_received,
                receiver.unprotect_failures,
                receiver.oversized,
            )
            if counted != before:
                transport.bytes_received += counted[0] - before[0]
                transport.rtp_packets_received += counted[1] - before[1]
                if counted[2] != before[2]:
                    transport.drops["srtp-unprotect-failed"] += counted[2] - before[2]
                if counted[3] != before[3]:
                    transport.drops["oversized-datagram"] += counted[3] - before[3]
                self._receiver_seen = counted
        sender = self.sender
        if sender is None:
            return
        seen = self._sender_seen
        now = (
            sender.packets_sent,
            sender.bytes_sent,
            sender.protect_failures,
            sender.send_failures,
        )
        if now == seen:
            return
        transport.rtp_packets_sent += now[0] - seen[0]
        transport.bytes_sent += now[1] - seen[1]
        if now[2] != seen[2]:
            transport.drops["srtp-protect-failed"] += now[2] - seen[2]
        if now[3] != seen[3]:
            transport.drops["send-failed"] += now[3] - seen[3]
        self._sender_seen = now

    def close(self) -> None:
        """Single-port mode: stop reading for this transport (its own socket's
        reader closes with the socket)."""
        receiver, shared = self.receiver, self._shared_reader
        if receiver is not None and shared is not None:
            shared.remove_child(receiver)
            receiver.close()
            self._shared_reader = None
