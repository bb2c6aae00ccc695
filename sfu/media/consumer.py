"""Consumer: an outgoing copy of another peer's Producer on a transport.

It rewrites SSRC, payload type, sequence number and timestamp of each packet
(the producer already rewrote the header extensions once per layout), keeps
sequence numbers and timestamps continuous across pauses and keyframe waits,
answers NACKs from its own history with RTX, and sends SRs whose NTP/RTP
mapping follows the publisher's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..channel.messages import Event, Method, SetPriorityRequest
from ..errors import InvalidRequestError, InvalidStateError
from ..models.rtp_uris import URI_MID
from . import rtcp
from .entity import MediaEntity
from .fastpath import new_rewriter
from .loss_repair import (
    MAX_RETRANSMISSION_AGE_AUDIO,
    MAX_RETRANSMISSION_AGE_VIDEO,
    RetransmissionGate,
)
from .rtp import FORWARDED_EXTENSIONS, rtx_wrap
from .rtp_rewriter import HISTORY_SIZE

if TYPE_CHECKING:
    from ..models import RtpParameters
    from .producer import Producer
    from .transport import Transport

logger = logging.getLogger(__name__)

# While waiting for a keyframe, ask again this often.
KEYFRAME_RETRY_INTERVAL = 1.0

_HEADER = struct.Struct("!BBHII")


class Consumer(MediaEntity):
    """Events: ``transportclose``, ``producerclose``, ``producerpause``,
    ``producerresume``, ``serverclose(reason)`` (closed by the server after an
    internal error), ``@close``."""

    def __init__(
        self,
        *,
        consumer_id: str,
        producer: Producer,
        rtp_parameters: RtpParameters,
        transport: Transport,
        paused: bool,
        app_data: dict[str, Any],
    ) -> None:
        super().__init__()
        self.id = consumer_id
        self.producer = producer
        self.producer_id = producer.id
        self.kind = producer.kind
        self.type = "simple"
        self.rtp_parameters = rtp_parameters
        self.app_data = app_data
        self.transport = transport
        self.paused = paused
        self.producer_paused = producer.paused
        self.closed = False
        self.priority = 1
        self.score = 10

        encoding = rtp_parameters.encodings[0]
        if encoding.ssrc is None:  # the control layer always gives one
            raise InvalidRequestError("missing rtpParameters.encodings[0].ssrc")
        self.ssrc: int = encoding.ssrc
        self.rtx_ssrc: int | None = encoding.rtx.ssrc if encoding.rtx is not None else None
        codecs = rtp_parameters.codecs
        media_codec = codecs[0]
        self.payload_type: int = media_codec.payload_type
        self.clock_rate: int = media_codec.clock_rate
        self.rtx_payload_type: int | None = next(
            (
                c.payload_type
                for c in codecs
                if c.is_rtx and int(c.parameters.get("apt", -1)) == self.payload_type
            ),
            None,
        )
        if self.rtx_payload_type is None:
            self.rtx_ssrc = None
        self.nack_enabled = any(
            fb.type == "nack" and not fb.parameter for fb in media_codec.rtcp_feedback
        )
        self.cname: str = rtp_parameters.rtcp.cname or ""
        # The consumer's MID, sent on RTX packets (see rtx_wrap).
        self._mid_extension: tuple[int, bytes] | None = None
        mid = rtp_parameters.mid
        for ext in rtp_parameters.header_extensions:
            if ext.uri == URI_MID and mid and 0 < ext.id < 15 and len(mid) <= 16:
                self._mid_extension = (ext.id, mid.encode())
        self.extension_ids: frozenset[int] = frozenset(
            ext.id for ext in rtp_parameters.header_extensions if ext.uri in FORWARDED_EXTENSIONS
        )

        # The per-packet rewrite, its history and the send (rtp_rewriter.py; in
        # C when built). What is not per packet stays here: keyframe waits and
        # where the numbering continues after a sync.
        self._rewriter = new_rewriter(self.ssrc)
        self._rewriter.use_sender(transport.rtp_fields_sender)
        self._needs_keyframe = self.kind == "video"
        self._ever_sent = False
        self._last_sender_report = -math.inf
        self._last_keyframe_request = 0.0
        self._rtx_seq = 0
        self._active = False

        # Which NACKed packets to resend (loss_repair.py), and what it held back.
        self._retransmissions = RetransmissionGate(
            HISTORY_SIZE,
            self.clock_rate,
            MAX_RETRANSMISSION_AGE_VIDEO if self.kind == "video" else MAX_RETRANSMISSION_AGE_AUDIO,
        )

        # counters for stats (and the rewriter's: packets_sent, bytes_sent,
        # packets_dropped_late)
        self.packets_retransmitted = 0
        self.gaps_resynchronized = 0
        self.nacks_received = 0
        self.keyframe_requests_received = 0
        self.fraction_lost = 0
        self.rtt = 0.0
        self._update_active()

    # ---- the hot path ----------------------------------------------------

    def send_rtp(
        self, b0: int, b1: int, tail: bytes, seq: int, timestamp: int, keyframe: bool, now: float
    ) -> None:
        """Rewrite and send one packet. ``tail`` is everything after the fixed header.

        (The producer calls ``rewriter.send``, through send_all for all the
        consumers of a layout at once, and ``send_after_sync`` itself.)"""
        if self._rewriter.send(b0, b1, tail, seq, timestamp, now):
            self.send_after_sync(b0, b1, tail, seq, timestamp, keyframe, now)

    def send_after_sync(
        self, b0: int, b1: int, tail: bytes, seq: int, timestamp: int, keyframe: bool, now: float
    ) -> None:
        """The rewriter needs a sync before this packet: sync here (video only
        on a keyframe, asking for one meanwhile), then send it."""
        if self._needs_keyframe:
            if not keyframe:
                if now - self._last_keyframe_request > KEYFRAME_RETRY_INTERVAL:
                    self._last_keyframe_request = now
                    self._request_producer_key_frame()
                return
            self._needs_keyframe = False
        self._sync(seq, timestamp, now)
        self._rewriter.send(b0, b1, tail, seq, timestamp, now)

    @property
    def rewriter(self) -> Any:
        """The per-packet rewrite (``rtp_rewriter.RtpRewriter`` or its C twin)."""
        return self._rewriter

    def use_sender(self, send: Callable[[int, int, int, int, int, bytes], object]) -> None:
        """The transport's send changed (see Transport.rtp_fields_sender)."""
        self._rewriter.use_sender(send)

    @property
    def packets_sent(self) -> int:
        return int(self._rewriter.packets_sent)

    @property
    def bytes_sent(self) -> int:
        return int(self._rewriter.bytes_sent)

    @property
    def packets_dropped_late(self) -> int:
        return int(self._rewriter.packets_dropped_late)

    def _sync(self, seq: int, timestamp: int, now: float) -> None:
        """Continue our numbering from where it stopped, whatever the input's numbering."""
        rewriter = self._rewriter
        rewriter.needs_sync = False
        rewriter.sync_seq = seq
        if not self._ever_sent:
            self._ever_sent = True
            rewriter.seq_offset = 0
            rewriter.ts_offset = 0
            rewriter.max_out_seq = (seq - 1) & 0xFFFF
            return
        next_seq = (rewriter.max_out_seq + 1) & 0xFFFF
        elapsed = max(now - rewriter.last_send_time, 0.0)
        next_ts = (rewriter.last_out_ts + max(1, int(elapsed * self.clock_rate))) & 0xFFFFFFFF
        rewriter.seq_offset = (seq - next_seq) & 0xFFFF
        rewriter.ts_offset = (timestamp - next_ts) & 0xFFFFFFFF

    def resync(self, wait_for_keyframe: bool = False) -> None:
        """The input's numbering changed or lost a stretch: continue ours without
        a hole, from the next packet (or, for video, the next keyframe)."""
        if not self._active:
            return
        self._rewriter.needs_sync = True
        if wait_for_keyframe:
            self.gaps_resynchronized += 1
        if wait_for_keyframe and self.kind == "video":
            self._needs_keyframe = True
            self._last_keyframe_request = time.monotonic()

    # ---- RTCP from the subscriber ---------------------------------------

    def receive_nack(self, lost: tuple[int, ...], now: float | None = None) -> None:
        """Resend what the gate allows of the NACKed packets, from this consumer's
        history (``now``: time.monotonic(), the clock of the packets' times)."""
        self.nacks_received += 1
        if not self.nack_enabled:
            return
        rewriter = self._rewriter
        gate = self._retransmissions
        if now is None:
            now = time.monotonic()
        gate.refill(rewriter.bytes_sent, now)
        for seq in lost:
            sent = rewriter.sent(seq)
            if sent is None:
                gate.not_sent()
                continue
            b0, b1, out_ts, tail = sent
            size = 12 + len(tail)
            if not gate.allow(
                seq, out_ts, size, rewriter.last_out_ts, rewriter.last_send_time, now, self.rtt
            ):
                continue
            packet = _HEADER.pack(b0, b1, seq, out_ts, self.ssrc) + tail
            if self.rtx_ssrc is not None and self.rtx_payload_type is not None:
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
                packet = rtx_wrap(
                    packet, self.rtx_payload_type, self._rtx_seq, self.rtx_ssrc, self._mid_extension
                )
            self.packets_retransmitted += 1
            self.transport.send_rtp(packet)

    @property
    def retransmissions_suppressed(self) -> dict[str, int]:
        """NACKed packets not resent, by reason (loss_repair.SUPPRESSION_REASONS)."""
        return self._retransmissions.suppressed.as_dict()

    def receive_key_frame_request(self) -> None:
        self.keyframe_requests_received += 1
        if self._active:
            self._request_producer_key_frame()

    def receive_report_block(self, block: rtcp.ReportBlock) -> None:
        self.fraction_lost = block.fraction_lost
        if block.lsr:
            # RTT = now - LSR - DLSR, all in 1/65536 s (RFC 3550 6.4.1)
            now = rtcp.ntp_middle32(rtcp.ntp_now())
            rtt = (now - block.lsr - block.dlsr) & 0xFFFFFFFF
            if rtt < 0x80000000:
                self.rtt = rtt / 65536.0

    def periodic_sender_report(self, now: float, ntp: int) -> bytes | None:
        """The transport's RTCP tick: this stream's SR at ``ntp`` when it is due.

        The transport puts the SRs due on one tick into one compound packet,
        with an SDES CNAME chunk for each.
        """
        if not rtcp.report_due(self.kind, self._last_sender_report, now):
            return None
        report = self.sender_report(ntp)
        if report is not None:
            self._last_sender_report = now
        return report

    def sender_report(self, ntp: int | None = None) -> bytes | None:
        """An SR at ``ntp`` (now by default), mapping our clock to the publisher's media
        time, or None before media."""
        if not self._ever_sent or self.closed:
            return None
        if ntp is None:
            ntp = rtcp.ntp_now()
        wall = rtcp.ntp_to_seconds(ntp)
        mapping = self._producer_media_time()
        if mapping is not None:
            sr_ntp, sr_rtp, _ = mapping
            elapsed = wall - rtcp.ntp_to_seconds(sr_ntp)
            rtp_now = (
                sr_rtp + int(elapsed * self.clock_rate) - self._rewriter.ts_offset
            ) & 0xFFFFFFFF
        else:
            elapsed = time.monotonic() - self._rewriter.last_send_time
            rtp_now = (self._rewriter.last_out_ts + int(elapsed * self.clock_rate)) & 0xFFFFFFFF
        return rtcp.build_sr(
            self.ssrc, ntp, rtp_now, self.packets_sent & 0xFFFFFFFF, self.bytes_sent & 0xFFFFFFFF
        )

    # ---- what a simulcast consumer (simulcast_consumer.py) chooses ------------

    def _request_producer_key_frame(self) -> None:
        self.producer.request_key_frame()

    def _producer_media_time(self) -> tuple[int, int, float] | None:
        """The SR mapping of the stream this consumer forwards."""
        return self.producer.media_time()

    def send_layer_rtp(
        self,
        layer: int,
        b0: int,
        b1: int,
        tail: bytes,
        seq: int,
        timestamp: int,
        keyframe: bool,
        now: float,
    ) -> None:
        """A simulcast producer's packet of ``layer``: a plain consumer (a pipe's)
        forwards the lowest layer only."""
        if layer == 0:
            self.send_rtp(b0, b1, tail, seq, timestamp, keyframe, now)

    def resync_layer(self, layer: int, wait_for_keyframe: bool) -> None:
        """A simulcast producer's ``layer`` broke its numbering (see resync)."""
        if layer == 0:
            self.resync(wait_for_keyframe)

    def sending_streams(self) -> Iterator[Consumer]:
        """The streams this consumer sends, each with its SSRC and SRs (a pipe's: one a layer)."""
        return iter((self,))

    def on_producer_layers_changed(self) -> None:
        """A simulcast producer's active layers changed (see Producer.active_layers)."""

    # ---- state -----------------------------------------------------------

    def _update_active(self) -> None:
        was_active = self._active
        self._active = not (self.paused or self.producer_paused or self.closed)
        self._rewriter.active = self._active
        if self._active and not was_active:
            self._start_over()

    def _start_over(self) -> None:
        """Restart numbering from the next packet; video waits for a keyframe,
        asked for now."""
        self._rewriter.needs_sync = True
        if self.kind == "video":
            self._needs_keyframe = True
            self._last_keyframe_request = time.monotonic()
            self._request_producer_key_frame()

    def on_transport_connected(self) -> None:
        """The transport can deliver from now on. What this consumer sent before
        went nowhere, the keyframe it started on too: start over as if new, or
        the subscriber's first frames would be deltas it cannot decode
        (mediasoup's Consumer::TransportConnected)."""
        self._ever_sent = False  # so the numbering starts as a new consumer's
        if self._active:
            self._start_over()

    async def pause(self) -> None:
        self._check_open()
        self.paused = True
        self._update_active()

    async def resume(self) -> None:
        self._check_open()
        self.paused = False
        self._update_active()

    async def request_key_frame(self) -> None:
        self._check_open()
        self._request_producer_key_frame()

    async def set_priority(self, priority: int) -> None:
        self._check_open()
        self.priority = priority

    def on_producer_paused(self) -> None:
        self.producer_paused = True
        self._update_active()
        self.notify(Event.PRODUCER_PAUSE)

    def on_producer_resumed(self) -> None:
        self.producer_paused = False
        self._update_active()
        self.notify(Event.PRODUCER_RESUME)

    def on_producer_closed(self) -> None:
        if self.closed:
            return
        self._close()
        self.notify(Event.PRODUCER_CLOSE)

    def fail(self, error: BaseException) -> None:
        """An internal error in this consumer: stop it now, close it, tell the room."""
        if self.closed:
            return
        self._active = False
        self._rewriter.active = False
        logger.error(
            "consumer %s (%s, peer %s) failed; closing it",
            self.id,
            self.kind,
            self.transport.app_data.get("peerId"),
            exc_info=error,
            extra=self.transport.log_extra,
        )
        # Called from the producer's forwarding loop: close outside of it.
        asyncio.get_running_loop().call_soon(self._close_after_failure)

    def _close_after_failure(self) -> None:
        if not self.closed:
            self._close()
            self.notify(Event.SERVER_CLOSE, "error")

    def transport_closed(self) -> None:
        if self.closed:
            return
        self._close()
        self.emit("transportclose")

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"consumer {self.id} is closed")

    def close(self) -> None:
        if not self.closed:
            self._close()

    def _close(self) -> None:
        self.closed = True
        self._active = False
        self._rewriter.close()
        self.producer.remove_consumer(self)
        self.emit_close()

    async def handle_request(self, method: Method, data: Any) -> Any:
        match method:
            case Method.CONSUMER_PAUSE:
                await self.pause()
            case Method.CONSUMER_RESUME:
                await self.resume()
            case Method.CONSUMER_SET_PRIORITY:
                request: SetPriorityRequest = data
                await self.set_priority(request["priority"])
            case Method.CONSUMER_SET_PREFERRED_LAYERS:
                self._check_open()  # a simple consumer has a single layer: nothing to switch
            case Method.CONSUMER_REQUEST_KEY_FRAME:
                await self.request_key_frame()
            case Method.CONSUMER_GET_STATS:
                return self.get_stats()
            case Method.CONSUMER_CLOSE:
                self.close()
            case _:
                return await super().handle_request(method, data)
        return None

    def get_stats(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "outbound-rtp",
                "kind": self.kind,
                "ssrc": self.ssrc,
                "rtxSsrc": self.rtx_ssrc,
                "packetCount": self.packets_sent,
                "byteCount": self.bytes_sent,
                "packetsRetransmitted": self.packets_retransmitted,
                "retransmissionsSuppressed": self.retransmissions_suppressed,
                "packetsDroppedLate": self.packets_dropped_late,
                "gapsResynchronized": self.gaps_resynchronized,
                "nackCount": self.nacks_received,
                "pliCount": self.keyframe_requests_received,
                "fractionLost": self.fraction_lost,
                "roundTripTime": self.rtt,
                "score": self.score,
            }
        ]
