"""Producer: one incoming track on a transport, forwarded to its consumers.

Per packet (the hot path) it parses only the fixed header and the extension
block, maps the client's payload type and extension ids onto the router's,
builds the rewritten header tail once per consumer layout, and hands it to
each consumer, which patches in its own seq/timestamp/SSRC.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..channel.messages import Event, Method
from ..errors import InvalidStateError
from ..models.rtp_uris import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, URI_RID, URI_RRID
from . import rtcp
from .entity import MediaEntity
from .fastpath import new_producer_path, send_all_function
from .rtp import (
    FORWARDED_EXTENSIONS,
    KEYFRAME_DETECTORS,
    RtpError,
    abs_send_time_now,
    build_extension_block,
    header_bounds,
    iter_one_byte_extensions,
    iter_two_byte_extensions,
    no_keyframes,
    parse_fixed_header,
    rtx_unwrap,
)
from .rtp_stream import DUPLICATE, GAP_TOO_WIDE, TOO_LATE, RtpStreamRecv

if TYPE_CHECKING:
    from ..models import RtpCodecParameters, RtpMapping, RtpParameters
    from ._native import ProducerPath
    from .consumer import Consumer
    from .transport import Transport

logger = logging.getLogger(__name__)

# Keyframe requests toward the publisher are merged within this window.
KEYFRAME_REQUEST_WINDOW = 0.3
# A simulcast layer without packets for this long is inactive (the browser
# stopped sending it); consumers fall back to a lower one.
LAYER_INACTIVE_AFTER = 1.0
# How often a simulcast producer checks its layers' activity.
LAYER_CHECK_INTERVAL = 0.25
# The keyframe-request key that means every stream of the producer.
ALL_LAYERS = -1
NACK_RETRY_INTERVAL = 0.05
NACK_MAX_AGE = 1.0
NACK_MAX_TRIES = 10

AudioLevelSink = Callable[["Producer", int], None]

_NO_ELEMENTS: list[tuple[int, bytes]] = []  # shared, never appended to


class _Counts:
    """The per-packet counters, when there is no C path to keep them."""

    __slots__ = ("bytes_received", "packets_received")

    def __init__(self) -> None:
        self.packets_received = 0
        self.bytes_received = 0


def _extension_mask(extension_ids: frozenset[int]) -> int:
    """The router extension ids a layout takes, as ProducerPath's bit mask."""
    return sum(1 << i for i in extension_ids if 0 < i < 15)


def _has_feedback(codec: RtpCodecParameters, fb_type: str, parameter: str = "") -> bool:
    return any(fb.type == fb_type and fb.parameter == parameter for fb in codec.rtcp_feedback)


class Producer(MediaEntity):
    """An incoming track. Events: ``transportclose``, ``serverclose(reason)`` (closed
    by the server after an internal error), ``@close``, ``pause``, ``resume``."""

    def __init__(
        self,
        *,
        producer_id: str,
        kind: str,
        rtp_parameters: RtpParameters,
        rtp_mapping: RtpMapping,
        transport: Transport,
        paused: bool,
        app_data: dict[str, Any],
    ) -> None:
        super().__init__()
        # The C receive path's view of this producer (fastpath.new_producer_path),
        # made once the mappings are known; paused and the sink follow it.
        self._path: ProducerPath | None = None
        self._paused = paused
        self._audio_level_sink: AudioLevelSink | None = None
        self.id = producer_id
        self.kind = kind
        # Several encodings are simulcast layers, lowest first (mediasoup's order).
        self.layer_count = len(rtp_parameters.encodings)
        self.type = "simulcast" if self.layer_count > 1 else "simple"
        self._simulcast = self.type == "simulcast"
        self.rtp_parameters = rtp_parameters
        self.rtp_mapping = rtp_mapping
        self.app_data = app_data
        self.closed = False
        self.transport = transport

        self._map_codecs(rtp_parameters, rtp_mapping)
        self._map_extensions(rtp_mapping)
        # SSRC -> stream, and RTX SSRC -> media SSRC
        self.streams: dict[int, RtpStreamRecv] = {}
        self.rtx_ssrcs: dict[int, int] = {}
        # Simulcast: each layer's stream (None until its SSRC is known), the
        # layer of each media SSRC, and the layer each RID names.
        self.layer_streams: list[RtpStreamRecv | None] = [None] * self.layer_count
        self._layer_by_ssrc: dict[int, int] = {}
        self._layer_by_rid: dict[bytes, int] = {
            e.rid.encode(): i for i, e in enumerate(rtp_parameters.encodings) if e.rid
        }
        self.layer_rids: list[str | None] = [e.rid for e in rtp_parameters.encodings]
        for layer, encoding in enumerate(rtp_parameters.encodings):
            ssrc = encoding.ssrc
            if ssrc is not None:
                self._add_layer_stream(layer, ssrc)
                if encoding.rtx is not None:
                    self.rtx_ssrcs[encoding.rtx.ssrc] = ssrc

        # consumers grouped by the set of router extension ids they accept
        self._layouts: dict[frozenset[int], list[Consumer]] = {}
        # The same, as the hot path reads it: (extension ids, consumers, their
        # rewriters), remade when a consumer comes or goes.
        self._send_groups: tuple[tuple[frozenset[int], tuple[Consumer, ...], tuple[Any, ...]], ...]
        self._send_groups = ()
        self._send_all = send_all_function()
        self.consumers: dict[str, Consumer] = {}

        # Keyframe requests, merged per layer (ALL_LAYERS: every stream).
        self._last_keyframe_request: dict[int, float] = {}
        self._keyframe_request_pending: set[int] = set()
        self._nack_timer: asyncio.TimerHandle | None = None
        # Simulcast: the layers with packets within LAYER_INACTIVE_AFTER, as last told
        # to the consumers, and the timer that checks them.
        self.active_layers: tuple[bool, ...] = (False,) * self.layer_count
        self._layer_timer: asyncio.TimerHandle | None = None
        # SSRC -> (time, bytes received) at the last stats request, for bitrates.
        self._stats_marks: dict[int, tuple[float, int]] = {}

        # Simulcast packets take the Python path: the consumers' layer
        # selection is not in C (yet).
        self._path = (
            None
            if self.type == "simulcast"
            else new_producer_path(
                self,
                self._pt_map,
                self._ext_forward,
                self._abs_send_time_id,
                self._audio_level_id,
                self._follow_up,
                self.fail,
            )
        )
        if self._path is not None:
            self._path.paused = bool(paused)
        # counters for stats; per packet, in the C path's struct when there is one
        self._counts: _Counts | ProducerPath = self._path if self._path is not None else _Counts()
        self.packets_discarded = 0
        self.packets_repaired = 0
        # Gaps closed with a keyframe request instead of a repair (loss_repair.py):
        # too wide to NACK, given up, or repaired too late to forward.
        self.gaps_resynchronized = 0
        self.nacks_sent = 0
        self.keyframe_requests_sent = 0
        self.score = 10
        self._last_receiver_report = -math.inf

    def _map_codecs(self, rtp_parameters: RtpParameters, rtp_mapping: RtpMapping) -> None:
        """The main codec's traits and the payload-type tables the hot path reads."""
        codecs = rtp_parameters.codecs
        media_codecs = [c for c in codecs if not c.is_rtx]
        main_codec = media_codecs[0]
        self.mime_type: str = main_codec.mime_type.lower()
        self.clock_rate: int = main_codec.clock_rate
        self._is_keyframe = KEYFRAME_DETECTORS.get(self.mime_type, no_keyframes)
        self._nack_enabled = self.kind == "video" and _has_feedback(main_codec, "nack")
        self._use_fir = not _has_feedback(main_codec, "nack", "pli") and _has_feedback(
            main_codec, "ccm", "fir"
        )
        # client payload type -> router payload type (media codecs)
        mapped = {m.payload_type: m.mapped_payload_type for m in rtp_mapping.codecs}
        self._pt_map: dict[int, int] = {
            c.payload_type: mapped[c.payload_type] for c in media_codecs
        }
        # client RTX payload type -> client media payload type (its apt)
        self._rtx_apt: dict[int, int] = {
            c.payload_type: int(c.parameters["apt"])
            for c in codecs
            if c.is_rtx and "apt" in c.parameters
        }

    def _map_extensions(self, rtp_mapping: RtpMapping) -> None:
        """Client extension id -> router extension id for the forwarded ones, and
        the ids the producer reads itself."""
        self._ext_forward: dict[int, int] = {}
        self._abs_send_time_id = -1
        self._audio_level_id = -1
        self.mid_extension_id = -1
        self.rid_extension_id = -1
        self.repaired_rid_extension_id = -1
        for ext in rtp_mapping.header_extensions:
            uri = ext.uri
            if uri in FORWARDED_EXTENSIONS:
                self._ext_forward[ext.id] = ext.mapped_id
            if uri == URI_ABS_SEND_TIME:
                self._abs_send_time_id = ext.id
            elif uri == URI_AUDIO_LEVEL:
                self._audio_level_id = ext.id
            elif uri == URI_MID:
                self.mid_extension_id = ext.id
            elif uri == URI_RID:
                self.rid_extension_id = ext.id
            elif uri == URI_RRID:
                self.repaired_rid_extension_id = ext.id
        self._forwarded_router_ids: frozenset[int] = frozenset(self._ext_forward.values())

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, paused: bool) -> None:
        self._paused = paused
        if self._path is not None:
            self._path.paused = bool(paused)

    @property
    def audio_level_sink(self) -> AudioLevelSink | None:
        """Called with (producer, level) for each packet's RFC 6464 audio level."""
        return self._audio_level_sink

    @audio_level_sink.setter
    def audio_level_sink(self, sink: AudioLevelSink | None) -> None:
        self._audio_level_sink = sink
        if self._path is not None:
            self._path.audio_level_sink = sink

    @property
    def native_path(self) -> ProducerPath | None:
        """For the transport's C receiver: this producer's mappings and layouts."""
        return self._path

    @property
    def packets_received(self) -> int:
        return self._counts.packets_received

    @property
    def bytes_received(self) -> int:
        return self._counts.bytes_received

    # ---- consumers -------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers[consumer.id] = consumer
        self._layouts.setdefault(consumer.extension_ids, []).append(consumer)
        self._update_send_groups()

    def remove_consumer(self, consumer: Consumer) -> None:
        if self.consumers.pop(consumer.id, None) is None:
            return
        group = self._layouts.get(consumer.extension_ids)
        if group is not None:
            group.remove(consumer)
            if not group:
                del self._layouts[consumer.extension_ids]
        self._update_send_groups()

    def _update_send_groups(self) -> None:
        self._send_groups = tuple(
            (extension_ids, tuple(consumers), tuple(c.rewriter for c in consumers))
            for extension_ids, consumers in self._layouts.items()
        )
        if self._path is not None:
            self._path.set_layouts(
                tuple(
                    (_extension_mask(extension_ids), rewriters, consumers)
                    for extension_ids, consumers, rewriters in self._send_groups
                )
            )

    # ---- the hot path ----------------------------------------------------

    def _add_layer_stream(self, layer: int, ssrc: int) -> None:
        stream = RtpStreamRecv(ssrc, self.clock_rate)
        self.streams[ssrc] = stream
        self.layer_streams[layer] = stream
        self._layer_by_ssrc[ssrc] = layer

    def learn_ssrc(
        self, ssrc: int, payload_type: int, extensions: dict[int, bytes] | None = None
    ) -> bool:
        """Adopt an SSRC the client did not signal (found by MID; a simulcast
        layer by its RID, its RTX stream by the repaired RID): True if taken."""
        if self.type == "simulcast":
            return self._learn_layer_ssrc(ssrc, payload_type, extensions or {})
        if payload_type in self._rtx_apt:
            if len(self.streams) == 1 and not self.rtx_ssrcs:
                self.rtx_ssrcs[ssrc] = next(iter(self.streams))
                return True
            return False
        if payload_type in self._pt_map and not self.streams:
            self._add_layer_stream(0, ssrc)
            return True
        return False

    def _learn_layer_ssrc(self, ssrc: int, payload_type: int, extensions: dict[int, bytes]) -> bool:
        if payload_type in self._rtx_apt:
            rid = extensions.get(self.repaired_rid_extension_id) or extensions.get(
                self.rid_extension_id
            )
            layer = self._layer_by_rid.get(rid or b"")
            stream = self.layer_streams[layer] if layer is not None else None
            if stream is None or stream.ssrc in self.rtx_ssrcs.values():
                return False  # its media stream is not known yet, or has its RTX
            self.rtx_ssrcs[ssrc] = stream.ssrc
            return True
        layer = self._layer_by_rid.get(extensions.get(self.rid_extension_id) or b"")
        if payload_type not in self._pt_map or layer is None or self.layer_streams[layer]:
            return False
        self._add_layer_stream(layer, ssrc)
        return True

    def receive_rtp(self, packet: bytes, now: float) -> None:  # noqa: C901, PLR0911, PLR0912 - per packet, flat on purpose (the Python twin of producer_path.c): a helper call per packet costs
        """Forward one unprotected RTP packet of this producer to its consumers."""
        try:
            csrc_end, ext_start, ext_end, payload_end = header_bounds(packet)
        except RtpError:
            self.transport.count_drop("malformed-rtp")
            return
        b1, pt, seq, timestamp, ssrc = parse_fixed_header(packet)

        media_ssrc = self.rtx_ssrcs.get(ssrc)
        if media_ssrc is not None:
            media_pt = self._rtx_apt.get(pt)
            if media_pt is None:
                self.transport.count_drop("unknown-payload-type")
                return
            unwrapped = rtx_unwrap(packet, media_pt, media_ssrc)
            if unwrapped is None:
                self.transport.count_drop("rtx-padding")
                return
            packet, seq = unwrapped
            csrc_end, ext_start, ext_end, payload_end = header_bounds(packet)
            b1, pt, seq, timestamp, ssrc = parse_fixed_header(packet)

        stream = self.streams.get(ssrc)
        if stream is None:
            self.transport.count_drop("unknown-ssrc")
            return
        router_pt = self._pt_map.get(pt)
        if router_pt is None:
            self.transport.count_drop("unknown-payload-type")
            return
        counts = self._counts
        counts.packets_received += 1
        counts.bytes_received += len(packet)
        layer = -1
        if self._simulcast:
            layer = self._layer_by_ssrc[ssrc]
            if not self.active_layers[layer]:
                self._layer_came_back(layer, now)
        newly_missing = stream.receive(seq, timestamp, now, len(packet))
        if newly_missing < 0:
            # Rare: only a packet out of sequence pays for the call.
            if not self._on_sequence_break(newly_missing, layer):
                return
            newly_missing = 0
        if media_ssrc is not None:
            self.packets_repaired += 1
        if newly_missing and self._nack_enabled:
            self._send_nacks(stream, now)

        # header extensions: map ids, read audio level, refresh abs-send-time
        elements = _NO_ELEMENTS
        if ext_end > ext_start:
            elements = []
            profile = (packet[csrc_end] << 8) | packet[csrc_end + 1]
            if profile == 0xBEDE:
                found = iter_one_byte_extensions(packet, ext_start, ext_end)
            elif profile & 0xFFF0 == 0x1000:
                found = iter_two_byte_extensions(packet, ext_start, ext_end)
            else:
                found = []
            for ext_id, start, end in found:
                if ext_id == self._audio_level_id and self.audio_level_sink is not None:
                    self.audio_level_sink(self, packet[start] & 0x7F)
                router_id = self._ext_forward.get(ext_id)
                if router_id is not None:
                    if ext_id == self._abs_send_time_id:
                        elements.append((router_id, abs_send_time_now()))
                    else:
                        elements.append((router_id, packet[start:end]))

        if self.paused or not self._send_groups:
            return
        keyframe = self._is_keyframe(packet, ext_end, payload_end)
        b1 = (b1 & 0x80) | router_pt
        # The payload is copied once per layout, straight into that layout's tail.
        payload = memoryview(packet)[ext_end:]
        csrcs = packet[12:csrc_end]
        full_block: bytes | None = None  # the block of a layout that takes every element
        for extension_ids, consumers, rewriters in self._send_groups:
            if extension_ids >= self._forwarded_router_ids:
                if full_block is None:
                    full_block = build_extension_block(elements)
                block = full_block
            else:
                block = build_extension_block([e for e in elements if e[0] in extension_ids])
            b0 = (packet[0] & 0xEF) | (0x10 if block else 0)
            tail = b"".join((csrcs, block, payload))
            if layer >= 0:
                self._send_layer(layer, consumers, b0, b1, tail, seq, timestamp, keyframe, now)
                continue
            # Consumer.send_rtp for the whole layout, in one call (in C when built).
            pending = self._send_all(rewriters, b0, b1, tail, seq, timestamp, now)
            if pending is not None:
                self._finish_sends(pending, consumers, b0, b1, tail, seq, timestamp, keyframe, now)

    def _send_layer(  # noqa: PLR0913, PLR0917 - the packet's fields as they are
        self,
        layer: int,
        consumers: tuple[Consumer, ...],
        b0: int,
        b1: int,
        tail: bytes,
        seq: int,
        timestamp: int,
        keyframe: bool,
        now: float,
    ) -> None:
        """A simulcast layer's packet to the consumers of one layout: each takes
        it or not by its own layer selection (simulcast_consumer.py)."""
        for consumer in consumers:
            try:
                consumer.send_layer_rtp(layer, b0, b1, tail, seq, timestamp, keyframe, now)
            except Exception as failure:
                consumer.fail(failure)

    # ---- simulcast layers ---------------------------------------------------

    def _layer_came_back(self, layer: int, now: float) -> None:
        """The first packet of an inactive layer: it is active from now on."""
        active = list(self.active_layers)
        active[layer] = True
        self._set_active_layers(tuple(active))
        if self._layer_timer is None:
            self._schedule_layer_check()

    def _schedule_layer_check(self) -> None:
        if not self.closed:
            self._layer_timer = asyncio.get_running_loop().call_later(
                LAYER_CHECK_INTERVAL, self._check_layers
            )

    def _check_layers(self) -> None:
        """The timer: a layer without packets for LAYER_INACTIVE_AFTER is inactive."""
        self._layer_timer = None
        if self.closed:
            return
        now = time.monotonic()
        self._set_active_layers(
            tuple(
                stream is not None
                and stream.started
                and now - stream.last_packet_time < LAYER_INACTIVE_AFTER
                for stream in self.layer_streams
            )
        )
        if any(self.active_layers):
            self._schedule_layer_check()

    def _set_active_layers(self, active: tuple[bool, ...]) -> None:
        if active == self.active_layers:
            return
        self.active_layers = active
        for consumer in list(self.consumers.values()):
            consumer.on_producer_layers_changed()

    def layer_media_time(self, layer: int) -> tuple[int, int, float] | None:
        """A simulcast layer's latest SR mapping (ntp, rtp, arrival), if any."""
        stream = self.layer_streams[layer] if 0 <= layer < self.layer_count else None
        return self.media_time(stream) if stream is not None else None

    def _on_sequence_break(self, verdict: int, layer: int) -> bool:
        """Handle RtpStreamRecv.receive's negative verdict; True to forward the packet."""
        if verdict == DUPLICATE:
            self.transport.count_drop("duplicate")
            return False
        if verdict == TOO_LATE:
            # Asked for, but out of the repair window when it came.
            self.transport.count_drop("late-repair")
            self._close_gap_with_key_frame()
            return False
        # GAP_TOO_WIDE (a blackout upstream: too much lost to repair) or
        # RESTARTED (a new source behind this SSRC): consumers continue
        # their own numbering without a hole, from the next keyframe after
        # a blackout, so subscribers do not wait for packets that will
        # never come.
        after_blackout = verdict == GAP_TOO_WIDE
        for consumer in self.consumers.values():
            if layer < 0:
                consumer.resync(wait_for_keyframe=after_blackout)
            else:  # a simulcast layer's: only who sends that layer
                consumer.resync_layer(layer, after_blackout)
        if after_blackout:
            self._close_gap_with_key_frame()
        return True

    def _finish_sends(  # noqa: PLR0913, PLR0917 - the packet's fields as they are; a tuple would allocate per send
        self,
        pending: list[tuple[int, BaseException | None]],
        consumers: tuple[Consumer, ...],
        b0: int,
        b1: int,
        tail: bytes,
        seq: int,
        timestamp: int,
        keyframe: bool,
        now: float,
    ) -> None:
        """The consumers of one layout that send_all left to us: to sync first
        (error None), or failed, which is contained to that consumer (the
        others got the packet)."""
        for index, error in pending:
            consumer = consumers[index]
            if error is not None:
                consumer.fail(error)
                continue
            try:
                consumer.send_after_sync(b0, b1, tail, seq, timestamp, keyframe, now)
            except Exception as failure:
                consumer.fail(failure)

    def _follow_up(  # noqa: PLR0913, PLR0917 - called from C (producer_path.c) with these positional fields
        self,
        consumers: tuple[Consumer, ...],
        pending: list[tuple[int, BaseException | None]],
        b0: int,
        b1: int,
        tail: bytes,
        seq: int,
        timestamp: int,
        packet: bytes,
        ext_end: int,
        payload_end: int,
        now: float,
    ) -> None:
        """The C path's call for the pending consumers of one layout."""
        keyframe = self._is_keyframe(packet, ext_end, payload_end)
        self._finish_sends(pending, consumers, b0, b1, tail, seq, timestamp, keyframe, now)

    # ---- RTCP toward the publisher -------------------------------------

    def receive_sender_report(self, report: rtcp.SenderReport, now: float) -> None:
        stream = self.streams.get(report.ssrc)
        if stream is not None:
            stream.receive_sr(report.ntp, report.rtp_timestamp, now)

    def media_time(self, ssrc_stream: RtpStreamRecv | None = None) -> tuple[int, int, float] | None:
        """The publisher's latest SR mapping (ntp, rtp, arrival) of the main stream."""
        stream = ssrc_stream or next(iter(self.streams.values()), None)
        if stream is None or not stream.last_sr_arrival:
            return None
        return stream.last_sr_ntp, stream.last_sr_rtp, stream.last_sr_arrival

    def periodic_report_blocks(self, now: float) -> list[rtcp.ReportBlock]:
        """The transport's RTCP tick: :meth:`report_blocks` when this producer is due."""
        if not rtcp.report_due(self.kind, self._last_receiver_report, now):
            return []
        blocks = self.report_blocks(now)
        if blocks:
            self._last_receiver_report = now
        return blocks

    def report_blocks(self, now: float) -> list[rtcp.ReportBlock]:
        return [s.report_block(now) for s in self.streams.values() if s.started]

    def request_key_frame(self, layer: int = ALL_LAYERS) -> None:
        """Ask the publisher for a keyframe of ``layer`` (a simulcast layer's SSRC;
        ALL_LAYERS: every stream), merging requests per layer: at most one
        upstream per KEYFRAME_REQUEST_WINDOW, plus one after it if any arrived
        meanwhile."""
        if self.kind != "video" or self.closed:
            return
        now = time.monotonic()
        wait = self._last_keyframe_request.get(layer, 0.0) + KEYFRAME_REQUEST_WINDOW - now
        if wait <= 0:
            self._send_key_frame_request(layer, now)
        elif layer not in self._keyframe_request_pending:
            # One more request after the window, covering everything merged meanwhile.
            self._keyframe_request_pending.add(layer)
            asyncio.get_running_loop().call_later(wait, self._send_pending_key_frame_request, layer)

    def _send_pending_key_frame_request(self, layer: int) -> None:
        self._keyframe_request_pending.discard(layer)
        if not self.closed:
            self._send_key_frame_request(layer, time.monotonic())

    def _send_key_frame_request(self, layer: int, now: float) -> None:
        self._last_keyframe_request[layer] = now
        sender = self.transport.rtcp_ssrc
        if layer == ALL_LAYERS or not self._simulcast:
            ssrcs = list(self.streams)
        else:
            stream = self.layer_streams[layer]
            ssrcs = [stream.ssrc] if stream is not None else []
        for ssrc in ssrcs:
            if self._use_fir:
                self.transport.fir_seq = (self.transport.fir_seq + 1) & 0xFF
                self.transport.send_rtcp(rtcp.build_fir(sender, ssrc, self.transport.fir_seq))
            else:
                self.transport.send_rtcp(rtcp.build_pli(sender, ssrc))
            self.keyframe_requests_sent += 1

    def _close_gap_with_key_frame(self) -> None:
        """A gap that NACKs will not repair in time: a keyframe replaces it."""
        self.gaps_resynchronized += 1
        self.request_key_frame()

    def _send_nacks(self, stream: RtpStreamRecv, now: float) -> None:
        lost, gave_up = stream.nack_list(now, NACK_RETRY_INTERVAL, NACK_MAX_AGE, NACK_MAX_TRIES)
        if gave_up:
            self._close_gap_with_key_frame()
        if lost:
            self.nacks_sent += 1
            self.transport.send_rtcp(rtcp.build_nack(self.transport.rtcp_ssrc, stream.ssrc, lost))
        if stream.missing and self._nack_timer is None:
            self._nack_timer = asyncio.get_running_loop().call_later(
                NACK_RETRY_INTERVAL, self._retry_nacks
            )

    def _retry_nacks(self) -> None:
        self._nack_timer = None
        if self.closed:
            return
        now = time.monotonic()
        for stream in self.streams.values():
            if stream.missing:
                self._send_nacks(stream, now)

    # ---- control ---------------------------------------------------------

    async def pause(self) -> None:
        self._check_open()
        if self.paused:
            return
        self.paused = True
        for consumer in list(self.consumers.values()):
            consumer.on_producer_paused()
        self.emit("pause")

    async def resume(self) -> None:
        self._check_open()
        if not self.paused:
            return
        self.paused = False
        for consumer in list(self.consumers.values()):
            consumer.on_producer_resumed()
        self.emit("resume")

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"producer {self.id} is closed")

    def close(self) -> None:
        """Close this producer and every consumer of it."""
        if self.closed:
            return
        self.closed = True
        if self._nack_timer is not None:
            self._nack_timer.cancel()
        if self._layer_timer is not None:
            self._layer_timer.cancel()
        for consumer in list(self.consumers.values()):
            consumer.on_producer_closed()
        self.consumers.clear()
        self._layouts.clear()
        self._send_groups = ()
        if self._path is not None:
            self._path.close()  # also its reference back to us
        self.emit_close()

    def fail(self, error: BaseException) -> None:
        """An internal error in this producer: log it, close it, tell the room."""
        if self.closed:
            return
        logger.error(
            "producer %s (%s, peer %s) failed; closing it",
            self.id,
            self.kind,
            self.transport.app_data.get("peerId"),
            exc_info=error,
            extra=self.transport.log_extra,
        )
        self.close()
        self.notify(Event.SERVER_CLOSE, "error")

    def transport_closed(self) -> None:
        if self.closed:
            return
        self.close()
        self.emit("transportclose")

    async def handle_request(self, method: Method, data: Any) -> Any:
        match method:
            case Method.PRODUCER_PAUSE:
                await self.pause()
            case Method.PRODUCER_RESUME:
                await self.resume()
            case Method.PRODUCER_GET_STATS:
                return self.get_stats()
            case Method.PRODUCER_CLOSE:
                self.close()
            case _:
                return await super().handle_request(method, data)
        return None

    def _bitrate_since_last_stats(self, stream: RtpStreamRecv, now: float) -> int:
        """Bits per second of ``stream`` since the previous stats request (0 at the first)."""
        then, bytes_then = self._stats_marks.get(stream.ssrc, (now, stream.bytes_received))
        self._stats_marks[stream.ssrc] = (now, stream.bytes_received)
        return int((stream.bytes_received - bytes_then) * 8 / (now - then)) if now > then else 0

    def get_stats(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        stats = []
        for ssrc, stream in self.streams.items():
            layer = self._layer_by_ssrc.get(ssrc, 0)
            stats.append(
                {
                    "type": "inbound-rtp",
                    "rid": self.layer_rids[layer],
                    "spatialLayer": layer,
                    "active": self.active_layers[layer] if self._simulcast else True,
                    "bitrate": self._bitrate_since_last_stats(stream, now),
                    "kind": self.kind,
                    "mimeType": self.mime_type,
                    "ssrc": stream.ssrc,
                    "packetCount": stream.received,
                    "byteCount": stream.bytes_received,
                    "packetsLost": max(
                        0, stream.extended_max_seq - stream.base_seq + 1 - stream.received
                    ),
                    "fractionLost": stream.fraction_lost,
                    "jitter": int(stream.jitter),
                    "packetsRepaired": self.packets_repaired,
                    "gapsResynchronized": self.gaps_resynchronized,
                    "nackCount": self.nacks_sent,
                    "pliCount": self.keyframe_requests_sent,
                    "score": self.score,
                }
            )
        return stats
