"""Consumer: the signaling side's handle on a consumer in a worker (mediasoup's Consumer.ts)."""

from __future__ import annotations

from typing import Any

from ..channel import Channel
from ..errors import InvalidStateError
from .channel_object import ChannelObject


class Consumer(ChannelObject):
    """Events: ``transportclose``, ``producerclose``, ``producerpause``,
    ``producerresume``, ``serverclose(reason)``, ``@close``."""

    prefix = "consumer"

    def __init__(
        self,
        channel: Channel,
        *,
        consumer_id: str,
        producer_id: str,
        kind: str,
        rtp_parameters: dict[str, Any],
        paused: bool,
        producer_paused: bool,
        app_data: dict[str, Any],
    ) -> None:
        super().__init__(channel, consumer_id)
        self.producer_id = producer_id
        self.kind = kind
        self.type = "simple"
        self.rtp_parameters = rtp_parameters
        self.paused = paused
        self.producer_paused = producer_paused
        self.app_data = app_data

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"consumer {self.id} is closed")

    async def pause(self) -> None:
        self._check_open()
        await self._request("pause")
        self.paused = True

    async def resume(self) -> None:
        self._check_open()
        await self._request("resume")
        self.paused = False

    async def set_priority(self, priority: int) -> None:
        self._check_open()
        await self._request("setPriority", {"priority": priority})

    async def set_preferred_layers(self, spatial_layer: int, temporal_layer: int) -> None:
        self._check_open()
        await self._request(
            "setPreferredLayers", {"spatialLayer": spatial_layer, "temporalLayer": temporal_layer}
        )

    async def request_key_frame(self) -> None:
        self._check_open()
        await self._request("requestKeyFrame")

    async def get_stats(self) -> Any:
        self._check_open()
        return await self._request("getStats")

    def on_notification(self, event: str, data: Any) -> None:
        if event == "producerpause":
            self.producer_paused = True
            self.emit("producerpause")
        elif event == "producerresume":
            self.producer_paused = False
            self.emit("producerresume")
        elif event in ("producerclose", "serverclose") and self._mark_closed():
            if event == "producerclose":
                self.emit("producerclose")
            else:
                self.emit("serverclose", data)
            self.emit("@close")
