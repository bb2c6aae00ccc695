"""Transport: what the control handles of WebRtcTransport and PipeTransport share (mediasoup's Transport.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from ..channel.messages import (
    Consumed,
    ConsumeDataRequest,
    DataConsumed,
    Event,
    Method,
    Produced,
    ProduceDataRequest,
    consume_request,
    produce_request,
)
from ..errors import InvalidRequestError, InvalidStateError, NotFoundError
from ..models import RtpCapabilities, RtpParameters, SctpStreamParameters
from . import ortc
from .channel_object import ChannelObject
from .consumer import Consumer
from .data_consumer import DataConsumer
from .data_producer import DataProducer
from .producer import Producer

if TYPE_CHECKING:
    from .router import Router


class Transport(ChannelObject):
    """Events: ``serverclose(reason)``, ``routerclose``, ``@close``. Closing it
    closes its producers and consumers, data producers and data consumers
    (mediasoup's cascade). ``observer``: ``newproducer(producer)``,
    ``newconsumer(consumer)``, ``newdataproducer``, ``newdataconsumer``, ``close``."""

    kind_name = "transport"
    close_method = Method.TRANSPORT_CLOSE

    def __init__(
        self, channel: Channel, transport_id: str, router: Router, app_data: dict[str, Any]
    ) -> None:
        super().__init__(channel, transport_id)
        self.router = router
        self.app_data = app_data
        self.close_reason: str | None = None
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.data_producers: dict[str, DataProducer] = {}
        self.data_consumers: dict[str, DataConsumer] = {}
        # Consumers' MIDs are numbered here, as in mediasoup's Transport.ts.
        self._next_mid = 0

    async def produce(
        self,
        *,
        kind: str,
        rtp_parameters: RtpParameters | dict[str, Any],
        paused: bool = False,
        app_data: dict[str, Any] | None = None,
        producer_id: str | None = None,
    ) -> Producer:
        """A producer. ORTC runs here: a client's wire parameters are validated
        (the edge) and mapped onto the router's, and the worker gets them
        resolved. ``producer_id`` is given only for pipe producers, whose
        parameters are another router's consumer's (typed, already valid)."""
        self._check_open()
        if kind not in ("audio", "video"):
            raise InvalidRequestError(f"invalid kind {kind!r}: expected 'audio' or 'video'")
        app_data = app_data or {}
        capabilities = self.router.rtp_capabilities
        if isinstance(rtp_parameters, RtpParameters):
            # The mapping settles an H264 profile in place: not in the caller's copy.
            rtp_parameters = rtp_parameters.model_copy(deep=True)
        else:
            rtp_parameters = ortc.validate_rtp_parameters(rtp_parameters)
        rtp_mapping = ortc.get_producer_rtp_parameters_mapping(rtp_parameters, capabilities)
        consumable = ortc.get_consumable_rtp_parameters(
            kind, rtp_parameters, capabilities, rtp_mapping
        )
        request = produce_request(
            kind=kind,
            rtp_parameters=rtp_parameters,
            rtp_mapping=rtp_mapping,
            paused=paused,
            app_data=app_data,
            producer_id=producer_id,
        )
        info: Produced = await self._request(Method.TRANSPORT_PRODUCE, request)
        producer = Producer(
            self._channel,
            producer_id=info["id"],
            kind=kind,
            rtp_parameters=rtp_parameters,
            consumable_rtp_parameters=consumable,
            paused=paused,
            app_data=app_data,
            transport=self,
        )
        if self.closed:  # closed while the worker answered
            producer.transport_closed()
            raise InvalidStateError(f"transport {self.id} closed")
        self.producers[producer.id] = producer
        producer.on("@close", lambda: self._forget(self.producers, producer))
        self.router.producer_added(producer)
        self.observer.emit("newproducer", producer)
        producer.attach()
        return producer

    async def consume(
        self,
        *,
        producer_id: str,
        rtp_capabilities: RtpCapabilities,
        paused: bool = True,
        app_data: dict[str, Any] | None = None,
    ) -> Consumer:
        """A consumer of a producer of this router, for a device with ``rtp_capabilities``
        (validated, as the room does at join: client input is validated once)."""
        rtp_parameters = self._consumer_rtp_parameters(producer_id, rtp_capabilities)
        rtp_parameters.mid = str(self._next_mid)
        self._next_mid += 1
        return await self._consume(producer_id, rtp_parameters, paused, app_data or {})

    def _consumer_rtp_parameters(
        self, producer_id: str, rtp_capabilities: RtpCapabilities
    ) -> RtpParameters:
        self._check_open()
        producer = self.router.producers.get(producer_id)
        if producer is None:
            raise NotFoundError(f"producer {producer_id} not found")
        # Raises UnsupportedError when the device has none of the producer's codecs.
        return ortc.get_consumer_rtp_parameters(
            producer.consumable_rtp_parameters, rtp_capabilities
        )

    async def _consume(
        self,
        producer_id: str,
        rtp_parameters: RtpParameters,
        paused: bool,
        app_data: dict[str, Any],
    ) -> Consumer:
        """Make the consumer in the worker, with parameters resolved here."""
        producer = self.router.producers[producer_id]
        info: Consumed = await self._request(
            Method.TRANSPORT_CONSUME,
            consume_request(
                producer_id=producer_id,
                kind=producer.kind,
                rtp_parameters=rtp_parameters,
                # The producer's streams as the router forwards them (simulcast layers).
                consumable_encodings=producer.consumable_rtp_parameters.encodings,
                paused=paused,
                app_data=app_data,
            ),
        )
        consumer = Consumer(
            self._channel,
            consumer_id=info["id"],
            producer_id=producer_id,
            kind=producer.kind,
            rtp_parameters=rtp_parameters,
            paused=paused,
            producer_paused=bool(info["producerPaused"]),
            app_data=app_data,
        )
        if self.closed:
            consumer.transport_closed()
            raise InvalidStateError(f"transport {self.id} closed")
        self.consumers[consumer.id] = consumer
        consumer.on("@close", lambda: self._forget(self.consumers, consumer))
        self.observer.emit("newconsumer", consumer)
        consumer.attach()
        return consumer

    async def produce_data(
        self,
        *,
        sctp_stream_parameters: SctpStreamParameters | None = None,
        label: str = "",
        protocol: str = "",
        paused: bool = False,
        app_data: dict[str, Any] | None = None,
        data_producer_id: str | None = None,
    ) -> DataProducer:
        """A data producer on the client's SCTP stream (parameters validated at
        the edge), or with none on a direct transport. ``data_producer_id`` only
        for a pipe's far end, which keeps the id of the data producer it mirrors."""
        self._check_open()
        app_data = app_data or {}
        request = ProduceDataRequest(
            sctpStreamParameters=(
                sctp_stream_parameters.to_wire() if sctp_stream_parameters is not None else None
            ),
            label=label,
            protocol=protocol,
            paused=paused,
            appData=app_data,
        )
        if data_producer_id is not None:
            request["id"] = data_producer_id
        info: Produced = await self._request(Method.TRANSPORT_PRODUCE_DATA, request)
        data_producer = DataProducer(
            self._channel,
            data_producer_id=info["id"],
            sctp_stream_parameters=sctp_stream_parameters,
            label=label,
            protocol=protocol,
            paused=paused,
            app_data=app_data,
            transport=self,
        )
        if self.closed:
            data_producer.transport_closed()
            raise InvalidStateError(f"transport {self.id} closed")
        self.data_producers[data_producer.id] = data_producer
        data_producer.on("@close", lambda: self._forget(self.data_producers, data_producer))
        self.router.data_producer_added(data_producer)
        self.observer.emit("newdataproducer", data_producer)
        data_producer.attach()
        return data_producer

    async def consume_data(
        self,
        *,
        data_producer_id: str,
        paused: bool = False,
        app_data: dict[str, Any] | None = None,
    ) -> DataConsumer:
        """A data consumer of a data producer of this router; the worker picks its stream id."""
        self._check_open()
        data_producer = self.router.data_producers.get(data_producer_id)
        if data_producer is None:
            raise NotFoundError(f"data producer {data_producer_id} not found")
        app_data = app_data or {}
        info: DataConsumed = await self._request(
            Method.TRANSPORT_CONSUME_DATA,
            ConsumeDataRequest(dataProducerId=data_producer_id, paused=paused, appData=app_data),
        )
        stream = info["sctpStreamParameters"]
        data_consumer = DataConsumer(
            self._channel,
            data_consumer_id=info["id"],
            data_producer=data_producer,
            sctp_stream_parameters=(
                SctpStreamParameters.from_wire(stream) if stream is not None else None
            ),
            paused=paused,
            data_producer_paused=bool(info["dataProducerPaused"]),
            app_data=app_data,
        )
        if self.closed:
            data_consumer.transport_closed()
            raise InvalidStateError(f"transport {self.id} closed")
        self.data_consumers[data_consumer.id] = data_consumer
        data_consumer.on("@close", lambda: self._forget(self.data_consumers, data_consumer))
        self.observer.emit("newdataconsumer", data_consumer)
        data_consumer.attach()
        return data_consumer

    @staticmethod
    def _forget(table: dict[str, Any], item: ChannelObject) -> None:
        if table.get(item.id) is item:
            del table[item.id]

    async def get_stats(self) -> Any:
        return await self._request(Method.TRANSPORT_GET_STATS)

    def _close_children(self) -> None:
        for consumer in list(self.consumers.values()):
            consumer.transport_closed()
        for producer in list(self.producers.values()):
            producer.transport_closed()
        for data_consumer in list(self.data_consumers.values()):
            data_consumer.transport_closed()
        for data_producer in list(self.data_producers.values()):
            data_producer.transport_closed()
        self.consumers.clear()
        self.producers.clear()
        self.data_consumers.clear()
        self.data_producers.clear()

    def on_notification(self, event: str, data: Any) -> None:
        if event == Event.SERVER_CLOSE and not self.closed:
            self.close_reason = str(data)
            self._closed("serverclose", self.close_reason)
        else:
            super().on_notification(event, data)
