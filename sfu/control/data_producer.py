"""DataProducer: the control handle on a data producer in a worker (mediasoup's DataProducer.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from ..channel.messages import Event, Method, data_message
from ..models import SctpStreamParameters
from .channel_object import ChannelObject

if TYPE_CHECKING:
    from .transport import Transport


class DataProducer(ChannelObject):
    """Events: ``transportclose``, ``serverclose(reason)``, ``@close``.
    ``observer``: ``pause``, ``resume``, ``close``."""

    kind_name = "dataProducer"
    close_method = Method.DATA_PRODUCER_CLOSE

    def __init__(
        self,
        channel: Channel,
        *,
        data_producer_id: str,
        sctp_stream_parameters: SctpStreamParameters | None,
        label: str,
        protocol: str,
        paused: bool,
        app_data: dict[str, Any],
        transport: Transport,
    ) -> None:
        super().__init__(channel, data_producer_id)
        self.type = "sctp" if sctp_stream_parameters is not None else "direct"
        self.sctp_stream_parameters = sctp_stream_parameters
        self.label = label
        self.protocol = protocol
        self.paused = paused
        self.app_data = app_data
        self.transport = transport

    async def pause(self) -> None:
        await self._request(Method.DATA_PRODUCER_PAUSE)
        if not self.paused:
            self.paused = True
            self.observer.emit("pause")

    async def resume(self) -> None:
        await self._request(Method.DATA_PRODUCER_RESUME)
        if self.paused:
            self.paused = False
            self.observer.emit("resume")

    async def send(self, message: str | bytes) -> None:
        """Send ``message`` as this (direct) data producer: to all its data consumers."""
        await self._request(Method.DATA_PRODUCER_SEND, data_message(message))

    async def get_stats(self) -> Any:
        return await self._request(Method.DATA_PRODUCER_GET_STATS)

    def on_notification(self, event: str, data: Any) -> None:
        if event == Event.SERVER_CLOSE:
            self._closed("serverclose", data)
        else:
            super().on_notification(event, data)
