"""Producer: the control handle on a producer in a worker (mediasoup's Producer.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from ..channel.messages import Event, Method
from ..models import RtpParameters
from .channel_object import ChannelObject

if TYPE_CHECKING:
    from .transport import Transport


class Producer(ChannelObject):
    """Events: ``transportclose``, ``serverclose(reason)``, ``pause``, ``resume``, ``@close``.
    ``observer``: ``pause``, ``resume``, ``close``."""

    kind_name = "producer"
    close_method = Method.PRODUCER_CLOSE

    def __init__(
        self,
        channel: Channel,
        *,
        producer_id: str,
        kind: str,
        rtp_parameters: RtpParameters,
        consumable_rtp_parameters: RtpParameters,
        paused: bool,
        app_data: dict[str, Any],
        transport: Transport,
    ) -> None:
        super().__init__(channel, producer_id)
        self.kind = kind
        self.type = "simple"
        self.rtp_parameters = rtp_parameters
        # The stream as the router forwards it: what consumers' parameters come from (ORTC).
        self.consumable_rtp_parameters = consumable_rtp_parameters
        self.paused = paused
        self.app_data = app_data
        self.transport = transport

    async def pause(self) -> None:
        await self._request(Method.PRODUCER_PAUSE)
        if not self.paused:
            self.paused = True
            self.emit("pause")
            self.observer.emit("pause")

    async def resume(self) -> None:
        await self._request(Method.PRODUCER_RESUME)
        if self.paused:
            self.paused = False
            self.emit("resume")
            self.observer.emit("resume")

    async def get_stats(self) -> Any:
        return await self._request(Method.PRODUCER_GET_STATS)

    def on_notification(self, event: str, data: Any) -> None:
        if event == Event.SERVER_CLOSE:
            self._closed("serverclose", data)
        else:
            super().on_notification(event, data)
