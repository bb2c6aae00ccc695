"""Transport: what the control handles of WebRtcTransport and PipeTransport share (mediasoup's Transport.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from ..errors import InvalidStateError
from .channel_object import ChannelObject
from .consumer import Consumer
from .producer import Producer

if TYPE_CHECKING:
    from .router import Router


class Transport(ChannelObject):
    """Events: ``serverclose(reason)``, ``routerclose``, ``@close``. Closing it
    closes its producers and consumers (mediasoup's cascade)."""

    prefix = "transport"

    def __init__(
        self, channel: Channel, transport_id: str, router: Router, app_data: dict[str, Any]
    ) -> None:
        super().__init__(channel, transport_id)
        self.router = router
        self.app_data = app_data
        self.close_reason: str | None = None
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"transport {self.id} is closed")

    async def produce(
        self,
        *,
        kind: str,
        rtp_parameters: dict[str, Any],
        paused: bool = False,
        app_data: dict[str, Any] | None = None,
        producer_id: str | None = None,
    ) -> Producer:
        self._check_open()
        app_data = app_data or {}
        data: dict[str, Any] = {
            "kind": kind,
            "rtpParameters": rtp_parameters,
            "paused": paused,
            "appData": app_data,
        }
        if producer_id is not None:
            data["id"] = producer_id
        info = await self._request("produce", data)
        producer = Producer(
            self._channel,
            producer_id=info["id"],
            kind=info["kind"],
            rtp_parameters=rtp_parameters,
            paused=paused,
            app_data=app_data,
            transport=self,
            producer_type=info["type"],
        )
        if self.closed:  # closed while the worker answered
            producer.transport_closed()
            raise InvalidStateError(f"transport {self.id} closed")
        self.producers[producer.id] = producer
        producer.on("@close", lambda: self._forget(self.producers, producer))
        self.router.producer_added(producer)
        producer.attach()
        return producer

    async def consume(
        self,
        *,
        producer_id: str,
        rtp_capabilities: dict[str, Any] | None = None,
        paused: bool = True,
        app_data: dict[str, Any] | None = None,
        pipe: bool = False,
    ) -> Consumer:
        self._check_open()
        app_data = app_data or {}
        data: dict[str, Any] = {"producerId": producer_id, "paused": paused, "appData": app_data}
        if pipe:
            data["pipe"] = True
        else:
            data["rtpCapabilities"] = rtp_capabilities
        info = await self._request("consume", data)
        consumer = Consumer(self._channel, info, app_data)
        if self.closed:
            consumer.transport_closed()
            raise InvalidStateError(f"transport {self.id} closed")
        self.consumers[consumer.id] = consumer
        consumer.on("@close", lambda: self._forget(self.consumers, consumer))
        consumer.attach()
        return consumer

    @staticmethod
    def _forget(table: dict[str, Any], item: Producer | Consumer) -> None:
        if table.get(item.id) is item:
            del table[item.id]

    async def get_stats(self) -> Any:
        self._check_open()
        return await self._request("getStats")

    def _close_children(self) -> None:
        for consumer in list(self.consumers.values()):
            consumer.transport_closed()
        for producer in list(self.producers.values()):
            producer.transport_closed()
        self.consumers.clear()
        self.producers.clear()

    def close(self) -> None:
        if self._mark_closed():
            self._close_children()
            self._request_close()
            self.emit("@close")

    def router_closed(self) -> None:
        """The router closed it (in the worker too)."""
        if self._mark_closed():
            self._close_children()
            self.emit("routerclose")
            self.emit("@close")

    def on_notification(self, event: str, data: Any) -> None:
        if event == "serverclose" and self._mark_closed():
            self.close_reason = str(data)
            self._close_children()
            self.emit("serverclose", self.close_reason)
            self.emit("@close")
