"""SimulcastConsumer: a consumer of a simulcast producer (mediasoup's SimulcastConsumer).

It forwards one of the producer's layers at a time as one stream. The target
layer is the preferred one (by default the highest), or the best active layer
below it, or else the lowest active one above it; the consumer switches to the
target only at a keyframe of that layer, which it asks for. Across a switch its
sequence numbers continue without a gap and its timestamps continue on the
previous layer's clock, mapped through both layers' sender reports (the wall
clock when a report is missing). VP8 temporal layers above the preferred one
are dropped (from the next frame on), and picture ids and TL0PICIDX are
rewritten so the subscriber sees one continuous stream.

Per packet of the producer this is a Python call (``send_layer_rtp``): the
producer takes simulcast packets on its Python path.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from ..channel.messages import Event, Method, SetPreferredLayersRequest
from . import rtcp
from .consumer import KEYFRAME_RETRY_INTERVAL, Consumer
from .vp8 import parse_vp8_descriptor, payload_start, write_picture_id

if TYPE_CHECKING:
    from ..models import RtpParameters
    from .producer import Producer
    from .transport import Transport

_SCALABILITY_RE = re.compile(r"^[LS](\d+)T(\d+)")
# A switch's SR-mapped timestamp is used only if it moves the output forward by
# less than this many seconds (else the reports are stale: the wall clock wins).
MAX_SWITCH_ADVANCE = 5.0


def temporal_layer_count(rtp_parameters: RtpParameters) -> int:
    """The temporal layers of the consumer's one encoding (``L3T3`` → 3)."""
    match = _SCALABILITY_RE.match(rtp_parameters.encodings[0].scalability_mode or "")
    return int(match.group(2)) if match else 1


def continued_timestamp(
    timestamp: int,
    new_report: tuple[int, int, float],
    old_report: tuple[int, int, float],
    clock_rate: int,
) -> int:
    """``timestamp`` of the new layer on the old layer's RTP clock, through each
    layer's (SR NTP, SR RTP) pair: the same capture instant on both clocks."""
    new_ntp, new_rtp, _ = new_report
    old_ntp, old_rtp, _ = old_report
    since_report = ((timestamp - new_rtp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
    instant = rtcp.ntp_to_seconds(new_ntp) + since_report / clock_rate
    return (old_rtp + round((instant - rtcp.ntp_to_seconds(old_ntp)) * clock_rate)) & 0xFFFFFFFF


class SimulcastConsumer(Consumer):
    """Events as Consumer's; notifies ``layerschange`` ({spatialLayer, temporalLayer}
    or None when nothing is sent)."""

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
        # Set before Consumer.__init__, which may start the consumer (and choose).
        self.spatial_layer_count = producer.layer_count
        self.temporal_layer_count = temporal_layer_count(rtp_parameters)
        self.preferred_spatial_layer = self.spatial_layer_count - 1
        self.preferred_temporal_layer = self.temporal_layer_count - 1
        self.current_spatial_layer = -1  # the layer being sent (-1: none)
        self.target_spatial_layer = -1  # the layer to send from its next keyframe
        self._previous_spatial_layer = -1  # the layer before a switch, for its clock
        # VP8: the temporal layer sent (-1: the stream has none), and the rewriting
        # that keeps sequence numbers, picture ids and TL0PICIDX continuous.
        self._vp8 = producer.mime_type == "video/vp8"
        self._current_temporal = -1
        self._last_in_seq = 0
        self._picture_id_offset = 0
        self._dropped_picture_id = -1
        self._tl0_offset = 0
        self._last_out_picture_id = -1
        self._last_out_tl0 = 0
        super().__init__(
            consumer_id=consumer_id,
            producer=producer,
            rtp_parameters=rtp_parameters,
            transport=transport,
            paused=paused,
            app_data=app_data,
        )
        self.type = "simulcast"

    # ---- per packet (Python) -------------------------------------------------

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
        if not self._active:
            return
        if layer != self.current_spatial_layer:
            if layer != self.target_spatial_layer:
                return
            if not keyframe:
                if now - self._last_keyframe_request > KEYFRAME_RETRY_INTERVAL:
                    self._last_keyframe_request = now
                    self._request_producer_key_frame()
                return
            self._switch_to(layer)
            self._last_in_seq = (seq - 1) & 0xFFFF
            switched = True
        else:
            switched = False
        if self._vp8:
            rewritten = self._rewrite_vp8(b0, tail, seq, switched)
            if rewritten is None:
                return
            tail = rewritten
        self.send_rtp(b0, b1, tail, seq, timestamp, keyframe, now)

    def _rewrite_vp8(self, b0: int, tail: bytes, seq: int, switched: bool) -> bytes | None:
        """Drop the temporal layers above the current one, closing their gaps in
        sequence numbers and picture ids; keep picture id and TL0PICIDX
        continuous across spatial switches. None: drop the packet."""
        descriptor = parse_vp8_descriptor(tail, payload_start(b0, tail))
        if descriptor is None:
            return tail
        in_order = seq == (self._last_in_seq + 1) & 0xFFFF
        if descriptor.tid >= 0 and descriptor.frame_start:
            self._set_current_temporal(min(self.preferred_temporal_layer, 3))
        if switched and self._last_out_picture_id >= 0:
            # The new layer's numbering continues ours.
            self._picture_id_offset = descriptor.picture_id - self._last_out_picture_id - 1
            self._tl0_offset = descriptor.tl0 - self._last_out_tl0 - 1
        # (The packet a switch starts at, a keyframe's, is always sent.)
        if descriptor.tid > self._current_temporal >= 0 and not switched:
            if in_order:  # the next packet in sequence: no hole for it downstream
                rewriter = self._rewriter
                rewriter.seq_offset = (rewriter.seq_offset + 1) & 0xFFFF
                self._last_in_seq = seq
            if descriptor.picture_id_bits and descriptor.picture_id != self._dropped_picture_id:
                self._dropped_picture_id = descriptor.picture_id
                self._picture_id_offset += 1
            return None
        if in_order or switched:
            self._last_in_seq = seq
        if not descriptor.picture_id_bits and descriptor.tl0_at < 0:
            return tail
        mask = 0x7FFF if descriptor.picture_id_bits == 15 else 0x7F
        picture_id = (descriptor.picture_id - self._picture_id_offset) & mask
        tl0 = (descriptor.tl0 - self._tl0_offset) & 0xFF
        self._last_out_picture_id, self._last_out_tl0 = picture_id, tl0
        if picture_id == descriptor.picture_id and tl0 == descriptor.tl0:
            return tail
        patched = bytearray(tail)
        if descriptor.picture_id_bits:
            write_picture_id(patched, descriptor, picture_id)
        if descriptor.tl0_at >= 0:
            patched[descriptor.tl0_at] = tl0
        return bytes(patched)

    def _set_current_temporal(self, temporal_layer: int) -> None:
        if temporal_layer != self._current_temporal:
            self._current_temporal = temporal_layer
            if self.current_spatial_layer >= 0:
                self._notify_layers()

    def _switch_to(self, layer: int) -> None:
        """From this keyframe on, ``layer`` is sent; the numbering continues."""
        self._previous_spatial_layer = self.current_spatial_layer
        self.current_spatial_layer = layer
        self._rewriter.needs_sync = True
        self._notify_layers()

    def _sync(self, seq: int, timestamp: int, now: float) -> None:
        continuing = self._ever_sent
        old_ts_offset = self._rewriter.ts_offset
        super()._sync(seq, timestamp, now)
        previous, self._previous_spatial_layer = self._previous_spatial_layer, -1
        if not continuing or previous < 0 or previous == self.current_spatial_layer:
            return
        old_report = self.producer.layer_media_time(previous)
        new_report = self.producer.layer_media_time(self.current_spatial_layer)
        if old_report is None or new_report is None:
            return  # the wall-clock continuation Consumer._sync chose
        rewriter = self._rewriter
        on_old_clock = continued_timestamp(timestamp, new_report, old_report, self.clock_rate)
        out_ts = (on_old_clock - old_ts_offset) & 0xFFFFFFFF
        advance = (out_ts - rewriter.last_out_ts) & 0xFFFFFFFF
        if 0 < advance < MAX_SWITCH_ADVANCE * self.clock_rate:
            rewriter.ts_offset = (timestamp - out_ts) & 0xFFFFFFFF

    def resync_layer(self, layer: int, wait_for_keyframe: bool) -> None:
        if layer == self.current_spatial_layer:
            self.resync(wait_for_keyframe)

    # ---- layer choice ----------------------------------------------------------

    def _choose_target(self) -> None:
        """The preferred layer, or the best active one below it, or the lowest
        active one above it; ask for a keyframe of a new target."""
        active = self.producer.active_layers
        preferred = self.preferred_spatial_layer
        target = next((layer for layer in range(preferred, -1, -1) if active[layer]), -1)
        if target < 0:
            target = next(
                (
                    layer
                    for layer in range(preferred + 1, self.spatial_layer_count)
                    if active[layer]
                ),
                -1,
            )
        current = self.current_spatial_layer
        if target < 0 and current >= 0 and not active[current]:
            self.current_spatial_layer = -1
            self._notify_layers()
        if target == self.target_spatial_layer:
            return
        self.target_spatial_layer = target
        if self._active and target >= 0 and target != self.current_spatial_layer:
            self._last_keyframe_request = time.monotonic()
            self._request_producer_key_frame()

    def on_producer_layers_changed(self) -> None:
        if not self.closed:
            self._choose_target()

    def set_preferred_layers(self, spatial_layer: int, temporal_layer: int) -> None:
        self._check_open()
        self.preferred_spatial_layer = max(0, min(spatial_layer, self.spatial_layer_count - 1))
        self.preferred_temporal_layer = max(0, min(temporal_layer, self.temporal_layer_count - 1))
        self._choose_target()

    def _notify_layers(self) -> None:
        layer = self.current_spatial_layer
        self.notify(
            Event.LAYERS_CHANGE,
            None
            if layer < 0
            else {"spatialLayer": layer, "temporalLayer": self._temporal_layer_sent()},
        )

    def _temporal_layer_sent(self) -> int:
        if self._current_temporal < 0:  # no temporal layer ids seen: all of them
            return self.temporal_layer_count - 1
        return min(self._current_temporal, self.temporal_layer_count - 1)

    # ---- Consumer's hooks --------------------------------------------------------

    def _request_producer_key_frame(self) -> None:
        layer = self.target_spatial_layer
        if layer < 0:
            layer = self.current_spatial_layer
        if layer >= 0:
            self.producer.request_key_frame(layer)

    def _producer_media_time(self) -> tuple[int, int, float] | None:
        if self.current_spatial_layer < 0:
            return None
        return self.producer.layer_media_time(self.current_spatial_layer)

    def _update_active(self) -> None:
        was_active = self._active
        super()._update_active()
        if was_active and not self._active and self.current_spatial_layer >= 0:
            self.current_spatial_layer = -1
            self._notify_layers()

    def _start_over(self) -> None:
        """A new start waits for a keyframe of the target layer."""
        self.current_spatial_layer = -1
        self.target_spatial_layer = -1
        self._previous_spatial_layer = -1
        self._choose_target()
        super()._start_over()

    async def handle_request(self, method: Method, data: Any) -> Any:
        if method == Method.CONSUMER_SET_PREFERRED_LAYERS:
            request: SetPreferredLayersRequest = data
            self.set_preferred_layers(request["spatialLayer"], request["temporalLayer"])
            return None
        return await super().handle_request(method, data)

    def get_stats(self) -> list[dict[str, Any]]:
        stats = super().get_stats()
        current = self.current_spatial_layer
        stats[0].update(
            {
                "spatialLayer": current if current >= 0 else None,
                "temporalLayer": self._temporal_layer_sent() if current >= 0 else None,
                "targetSpatialLayer": self.target_spatial_layer,
                "preferredSpatialLayer": self.preferred_spatial_layer,
                "preferredTemporalLayer": self.preferred_temporal_layer,
            }
        )
        return stats
