"""DataConsumer: the control handle on a data consumer in a worker (mediasoup's DataConsumer.ts)."""

from __future__ import annotations

import logging
from typing import Any

from ..channel import Channel
from ..channel.messages import Event, Method, data_payload
from ..models import SctpStreamParameters
from .channel_object import ChannelObject
from .data_producer import DataProducer

logger = logging.getLogger(__name__)


class DataConsumer(ChannelObject):
    """Events: ``message(str | bytes)`` (on a direct transport), ``transportclose``,
    ``dataproducerclose``, ``dataproducerpause``,
    ``dataproducerresume``, ``serverclose(reason)`` (``"stalled"``: its reader
    fell too far behind), ``@close``. ``observer``: ``pause``, ``resume``, ``close``."""

    kind_name = "dataConsumer"
    close_method = Method.DATA_CONSUMER_CLOSE

    def __init__(
        self,
        channel: Channel,
        *,
        data_consumer_id: str,
        data_producer: DataProducer,
        sctp_stream_parameters: SctpStreamParameters | None,
        paused: bool,
        data_producer_paused: bool,
        app_data: dict[str, Any],
    ) -> None:
        super().__init__(channel, data_consumer_id)
        self.type = "sctp" if sctp_stream_parameters is not None else "direct"
        self.data_producer_id = data_producer.id
        self.sctp_stream_parameters = sctp_stream_parameters
        self.label = data_producer.label
        self.protocol = data_producer.protocol
        self.paused = paused
        self.data_producer_paused = data_producer_paused
        self.app_data = app_data

    async def pause(self) -> None:
        await self._request(Method.DATA_CONSUMER_PAUSE)
        if not self.paused:
            self.paused = True
            self.observer.emit("pause")

    async def resume(self) -> None:
        await self._request(Method.DATA_CONSUMER_RESUME)
        if self.paused:
            self.paused = False
            self.observer.emit("resume")

    async def get_stats(self) -> Any:
        return await self._request(Method.DATA_CONSUMER_GET_STATS)

    def on_notification(self, event: str, data: Any) -> None:
        if event == Event.DATA_MESSAGE:
            try:
                message = data_payload(data)
            except ValueError:
                logger.warning("data consumer %s: a malformed message notification", self.id)
                return
            self.emit("message", message)
        elif event == Event.PRODUCER_PAUSE:
            self.data_producer_paused = True
            self.emit("dataproducerpause")
        elif event == Event.PRODUCER_RESUME:
            self.data_producer_paused = False
            self.emit("dataproducerresume")
        elif event == Event.DATA_PRODUCER_CLOSE:
            self._closed("dataproducerclose")
        elif event == Event.SERVER_CLOSE:
            self._closed("serverclose", data)
        else:
            super().on_notification(event, data)
