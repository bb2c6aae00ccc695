"""PipeConsumer: a pipe's consumer of a simulcast producer, carrying every layer.

The router on the other worker gets the producer as it is: one stream per
layer, each on its own SSRC (the consumer's encodings, which the pipe producer
there takes as an ssrc-based simulcast producer), so its consumers switch
layers themselves. Each layer is forwarded as a plain consumer would forward
it (its own numbering, history, keyframe waits and SRs): the consumer itself
sends layer 0, a ``LayerStream`` each of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .consumer import Consumer

if TYPE_CHECKING:
    from ..models import RtpParameters
    from .producer import Producer
    from .transport import Transport


class LayerStream(Consumer):
    """One layer of a PipeConsumer: never registered, driven by it."""

    def __init__(
        self,
        *,
        layer: int,
        consumer_id: str,
        producer: Producer,
        rtp_parameters: RtpParameters,
        transport: Transport,
        paused: bool,
    ) -> None:
        self.layer = layer
        super().__init__(
            consumer_id=consumer_id,
            producer=producer,
            rtp_parameters=rtp_parameters,
            transport=transport,
            paused=paused,
            app_data={},
        )

    def _request_producer_key_frame(self) -> None:
        self.producer.request_key_frame(self.layer)

    def _producer_media_time(self) -> tuple[int, int, float] | None:
        return self.producer.layer_media_time(self.layer)

    def _close(self) -> None:
        """Stops it only: it was never one of the producer's consumers."""
        self.closed = True
        self._active = False
        self._rewriter.close()


class PipeConsumer(Consumer):
    """A Consumer whose encodings are the producer's layers, one SSRC each."""

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
        super().__init__(
            consumer_id=consumer_id,
            producer=producer,
            rtp_parameters=rtp_parameters,
            transport=transport,
            paused=paused,
            app_data=app_data,
        )
        self.type = "pipe"
        self.layers: list[Consumer] = [self]
        for layer, encoding in enumerate(rtp_parameters.encodings[1:], start=1):
            self.layers.append(
                LayerStream(
                    layer=layer,
                    consumer_id=f"{consumer_id}:{layer}",
                    producer=producer,
                    rtp_parameters=rtp_parameters.model_copy(update={"encodings": [encoding]}),
                    transport=transport,
                    paused=paused,
                )
            )

    def sending_streams(self) -> Iterator[Consumer]:
        return iter(self.layers)

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
        if layer < len(self.layers):
            self.layers[layer].send_rtp(b0, b1, tail, seq, timestamp, keyframe, now)

    def resync_layer(self, layer: int, wait_for_keyframe: bool) -> None:
        if layer < len(self.layers):
            self.layers[layer].resync(wait_for_keyframe)

    def _request_producer_key_frame(self) -> None:
        self.producer.request_key_frame(0)

    def _producer_media_time(self) -> tuple[int, int, float] | None:
        return self.producer.layer_media_time(0)

    def _each_layer(self, action: Callable[[Consumer], None]) -> None:
        for stream in self.layers[1:]:
            action(stream)

    def _update_active(self) -> None:
        super()._update_active()
        if not hasattr(self, "layers"):
            return  # Consumer.__init__: the layer streams start as this one does
        for stream in self.layers[1:]:
            stream.paused = self.paused
            stream.producer_paused = self.producer_paused
            stream._update_active()

    def on_transport_connected(self) -> None:
        super().on_transport_connected()
        self._each_layer(lambda stream: stream.on_transport_connected())

    def use_sender(self, send: Callable[[int, int, int, int, int, bytes], object]) -> None:
        super().use_sender(send)
        if hasattr(self, "layers"):
            self._each_layer(lambda stream: stream.use_sender(send))

    def _close(self) -> None:
        self._each_layer(lambda stream: stream.close())
        super()._close()
