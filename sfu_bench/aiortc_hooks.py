"""Every touch of aiortc's private API by the benchmark lives here, and only here.

Why a module of its own: these hooks serve only the bench's load clients,
never the server, so they stay out of the server package's
``sfu/aiortc_adapter.py`` (which holds the touches of the server and of
``sfu.client``). Both modules rely on aiortc and aioice being pinned to
exact versions in pyproject.toml: re-check both before moving the pin.

Benchmark load clients must be much cheaper than the server they load, and
must timestamp packets where they enter and leave. Each touch says why:

- :func:`intercept_incoming_srtp` replaces ``datagram_received`` of the
  aioice ``StunProtocol`` sockets behind an ``RTCDtlsTransport``
  (``RTCIceTransport._connection._protocols``) so that a subscriber counts
  SRTP packets by their clear-text RTP header as they come off the socket
  and drops them. Through aiortc each packet would cost a STUN parse
  attempt, an unbounded aioice queue, a task wake-up, SRTP and ``RtpPacket``
  parsing: a few subscribers per core instead of hundreds, and a starved
  subscriber queues seconds of packets there instead of losing them. RTCP,
  STUN and DTLS still go to aioice/aiortc. With the bench's C counter
  (``sfu_bench._counter``) it goes one step further: the socket leaves
  asyncio's selector loop (``loop._remove_reader``: the public
  ``remove_reader`` refuses a socket that a transport owns) for the
  counter's own epoll set, which hands the datagrams that are not RTP to
  the protocol's ``datagram_received``; the protocol's ``connection_lost``
  takes it out again before the transport closes the socket.
- :func:`send_rtcp` sends the receiver reports the bench then builds itself
  through ``RTCDtlsTransport._send_rtp`` (which protects RTCP with SRTCP).
- :func:`observe_outgoing_rtp` wraps ``_send_rtp`` on a publisher to note
  when each frame's first packet leaves.
- :func:`on_keyframe_request` wraps ``RTCRtpSender._send_keyframe``, which
  aiortc calls on PLI/FIR but which only affects frames it encodes itself,
  so that a track of pre-encoded packets can jump to its next keyframe.
- :func:`sender_ssrc` reads ``RTCRtpSender._ssrc`` (a plain aiortc peer
  connection, unlike pymediasoup, does not tell its SSRCs otherwise).
- :func:`stop_idle_receiver_reports` cancels an ``RTCRtpReceiver``'s own
  report task (``__rtcp_task``): the packets never reach that receiver, so
  the task only wakes up about once a second to send nothing, and with
  hundreds of subscribers in a load process those timers cost more than
  their packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

__all__ = [
    "intercept_incoming_srtp",
    "observe_outgoing_rtp",
    "on_keyframe_request",
    "send_rtcp",
    "sender_ssrc",
    "stop_idle_receiver_reports",
]


def intercept_incoming_srtp(
    dtls_transport: Any,
    handler: Callable[[bytes, int], None],
    receive_buffer: int = 0,
    reader: Any = None,
) -> int:
    """Give every SRTP packet (not SRTCP) that reaches the ICE sockets of ``dtls_transport``
    (an aiortc ``RTCDtlsTransport``) to ``handler``, still encrypted, instead of to aiortc.

    The RTP header of an SRTP packet is not encrypted: ``handler`` can read
    its sequence number, timestamp, SSRC and marker. It is called as
    ``handler(packet, fd)``, ``fd`` being the socket's descriptor (-1 if
    unknown), right after the packet was read from it (so that it can ask the
    kernel when the packet arrived). Call it once the ICE transport has
    gathered (after the local description is set). ``receive_buffer``:
    SO_RCVBUF for those sockets (0: leave it). Returns the number of sockets
    hooked.

    ``reader``: an object with ``watch(fd, fallback)`` and ``unwatch(fd)``
    (the bench's C counter) that then reads the sockets itself, instead of
    ``handler``, where the running loop is asyncio's selector loop (not
    uvloop). It gives what is not RTP to ``fallback(data, address)``, the
    protocol's own ``datagram_received``. The transport still owns the
    socket; ``unwatch`` comes first when it is lost.
    """
    loop: Any = asyncio.get_running_loop()  # the selector loop's private reader API, below
    selector_loop = hasattr(loop, "_remove_reader")
    connection = dtls_transport.transport._connection
    hooked = 0
    for protocol in list(connection._protocols):
        if getattr(protocol, "_sfu_srtp_handler", None) is not None:
            continue
        sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
        if receive_buffer and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        original = protocol.datagram_received
        if reader is not None and selector_loop and sock is not None:
            fd = sock.fileno()
            loop._remove_reader(fd)
            reader.watch(fd, original)
            lost = protocol.connection_lost

            def connection_lost(
                exc: Exception | None,
                lost: Callable[[Exception | None], None] = lost,
                fd: int = fd,
            ) -> None:
                reader.unwatch(fd)
                lost(exc)

            protocol.connection_lost = connection_lost
            protocol._sfu_srtp_handler = reader
            hooked += 1
            continue

        def datagram_received(
            data: bytes,
            addr: Any,
            original: Callable[[bytes, Any], None] = original,
            fd: int = sock.fileno() if sock is not None else -1,
        ) -> None:
            # RFC 7983 demultiplexing: 128..191 is RTP/RTCP; RTCP packet types are 192..223.
            if len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 224:
                handler(data, fd)
            else:
                original(data, addr)

        protocol.datagram_received = datagram_received
        protocol._sfu_srtp_handler = handler
        hooked += 1
    return hooked


async def send_rtcp(dtls_transport: Any, data: bytes) -> None:
    """Send a raw (compound) RTCP packet on an aiortc ``RTCDtlsTransport``, SRTCP-protected."""
    await dtls_transport._send_rtp(data)


def observe_outgoing_rtp(dtls_transport: Any, observer: Callable[[bytes], None]) -> None:
    """Call ``observer(packet)`` with every RTP/RTCP packet before aiortc protects and sends it.

    Idempotent per observer: wrapping the same transport twice with the same
    observer does nothing the second time.
    """
    observers: list[Callable[[bytes], None]] | None = getattr(
        dtls_transport, "_sfu_rtp_observers", None
    )
    if observers is None:
        observers = []
        dtls_transport._sfu_rtp_observers = observers
        original = dtls_transport._send_rtp

        async def send_rtp(data: bytes) -> None:
            for callback in observers:
                callback(data)
            await original(data)

        dtls_transport._send_rtp = send_rtp
    if observer not in observers:
        observers.append(observer)


def on_keyframe_request(sender: Any, callback: Callable[[], None]) -> None:
    """Call ``callback()`` whenever an aiortc ``RTCRtpSender`` receives a PLI or FIR."""
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        callback()

    sender._send_keyframe = send_keyframe


def stop_idle_receiver_reports(receiver: Any) -> bool:
    """Cancel the receiver-report task of an aiortc ``RTCRtpReceiver`` that
    :func:`intercept_incoming_srtp` keeps from seeing its packets.

    aiortc reports only the streams it has seen, so the task sends nothing:
    it only wakes up every 0.5-1.5 s. ``receiver.stop()`` waits for the task
    to have started and then exited; a task cancelled before its first step
    would never start, so a task that has not started yet is cancelled one
    loop turn later, after that step. Returns False when the receiver has no
    such task.
    """
    task = getattr(receiver, "_RTCRtpReceiver__rtcp_task", None)
    started = getattr(receiver, "_RTCRtpReceiver__rtcp_started", None)
    if task is None or started is None or task.done():
        return False

    def cancel() -> None:
        if started.is_set() and not task.done():
            task.cancel()

    if started.is_set():
        cancel()
    else:
        # The task's first step was queued when it was created: this runs after it.
        task.get_loop().call_soon(cancel)
    return True


def sender_ssrc(sender: Any) -> int:
    """The media SSRC an aiortc ``RTCRtpSender`` sends with."""
    return int(sender._ssrc)
