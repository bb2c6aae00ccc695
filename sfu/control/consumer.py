"""Consumer: the control handle on a consumer in a worker (mediasoup's Consumer.ts)."""

from __future__ import annotations

from typing import Any

from ..channel import Channel
from ..channel.messages import Event, Method, SetPreferredLayersRequest, SetPriorityRequest
from ..models import RtpParameters
from .channel_object import ChannelObject


class Consumer(ChannelObject):
    """Events: ``transportclose``, ``producerclose``, ``producerpause``,
    ``producerresume``, ``layerschange(layers or None)``, ``serverclose(reason)``, ``@close``. ``observer``:
    ``pause``, ``resume``, ``close``."""

    kind_name = "consumer"
    close_method = Method.CONSUMER_CLOSE

    def __init__(
        self,
        channel: Channel,
        *,
        consumer_id: str,
        producer_id: str,
        kind: str,
        rtp_parameters: RtpParameters,
        paused: bool,
        producer_paused: bool,
        app_data: dict[str, Any],
    ) -> None:
        super().__init__(channel, consumer_id)
        self.producer_id = producer_id
        self.kind = kind
        self.type = "simple"  # the transport sets "simulcast"
        # The layers a simulcast consumer sends ({spatialLayer, temporalLayer}), None: none.
        self.current_layers: dict[str, int] | None = None
        self.rtp_parameters = rtp_parameters
        self.paused = paused
        self.producer_paused = producer_paused
        self.app_data = app_data

    async def pause(self) -> None:
        await self._request(Method.CONSUMER_PAUSE)
        if not self.paused:
            self.paused = True
            self.observer.emit("pause")

    async def resume(self) -> None:
        await self._request(Method.CONSUMER_RESUME)
        if self.paused:
            self.paused = False
            self.observer.emit("resume")

    async def set_priority(self, priority: int) -> None:
        await self._request(Method.CONSUMER_SET_PRIORITY, SetPriorityRequest(priority=priority))

    async def set_preferred_layers(self, spatial_layer: int, temporal_layer: int) -> None:
        await self._request(
            Method.CONSUMER_SET_PREFERRED_LAYERS,
            SetPreferredLayersRequest(spatialLayer=spatial_layer, temporalLayer=temporal_layer),
        )

    async def request_key_frame(self) -> None:
        await self._request(Method.CONSUMER_REQUEST_KEY_FRAME)

    async def get_stats(self) -> Any:
        return await self._request(Method.CONSUMER_GET_STATS)

    def on_notification(self, event: str, data: Any) -> None:
        if event == Event.PRODUCER_PAUSE:
            self.producer_paused = True
            self.emit("producerpause")
        elif event == Event.PRODUCER_RESUME:
            self.producer_paused = False
            self.emit("producerresume")
        elif event == Event.PRODUCER_CLOSE:
            self._closed("producerclose")
        elif event == Event.LAYERS_CHANGE:
            self.current_layers = data
            self.emit("layerschange", data)
        elif event == Event.SERVER_CLOSE:
            self._closed("serverclose", data)
        else:
            super().on_notification(event, data)
