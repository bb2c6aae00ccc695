"""Data channels in a room, as mediasoup-demo's: a peer's ``produceData``
makes a DataProducer on its sending transport, and every other joined peer
with SCTP on its consuming transport gets a DataConsumer of it, offered with
the ``newDataConsumer`` request (on join for the data producers that exist,
and for each new one). ``dataConsumerClosed`` tells a peer one of its data
consumers is gone (its data producer closed, or it fell too far behind).

The server speaks too (:meth:`DataChannels.send_data`, ``Room.send_data``):
one direct data producer per label on the room's first router, consumed by
every peer like a peer's (``newDataConsumer`` with ``peerId`` null, as
mediasoup-demo's bot). A data producer reaches peers on another worker
through ``Router.pipe_data_to_router``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..control.data_consumer import DataConsumer
from ..control.data_producer import DataProducer
from ..errors import ForbiddenError, InvalidStateError, LimitError, SfuError
from ..signaling.protoo import ProtooRequestError
from .peer import Peer
from .requests import DataConsumerRequest, DataProducerRequest, ProduceDataRequest

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

# What the server hears: (peer id, label, message).
DataListener = Callable[[str, str, "str | bytes"], None]


class DataChannels:
    def __init__(self, room: Room) -> None:
        self._room = room
        self._tasks: set[asyncio.Task[None]] = set()
        # The server's own data producers, by label (made on first use).
        self._server_producers: dict[str, asyncio.Task[DataProducer]] = {}
        # The server listening: its direct data consumers of the peers' data producers.
        self._listeners: list[DataListener] = []
        self._readers: dict[str, DataConsumer] = {}

    # ---- the server listening -------------------------------------------------------

    async def listen(self, listener: DataListener) -> Callable[[], None]:
        """Call ``listener(peer_id, label, message)`` for every message of every
        peer's data producer (a direct data consumer of each: those that exist
        when this returns, and each new one before its ``produceData`` is answered);
        the returned function stops it (the last one closes the readers)."""
        self._listeners.append(listener)
        await asyncio.gather(
            *(
                self._read(peer, data_producer)
                for peer in self._room.joined_peers()
                for data_producer in list(peer.data_producers.values())
            )
        )

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
            if not self._listeners:
                for reader in list(self._readers.values()):
                    reader.close()
                self._readers.clear()

        return stop

    async def _read(self, peer: Peer, data_producer: DataProducer) -> None:
        if data_producer.id in self._readers or data_producer.closed:
            return
        try:
            transport = await data_producer.transport.router.direct_transport()
            reader = await transport.consume_data(
                data_producer_id=data_producer.id, app_data={"reader": True}
            )
        except SfuError as error:
            logger.warning("room %s: cannot read data of %s: %s", self._room.id, peer.id, error)
            return
        if not self._listeners:  # stopped meanwhile
            reader.close()
            return
        self._readers[data_producer.id] = reader
        reader.on("@close", lambda: self._readers.pop(data_producer.id, None))
        label = data_producer.label

        def heard(message: str | bytes) -> None:
            for listener in list(self._listeners):
                try:
                    listener(peer.id, label, message)
                except Exception:
                    logger.exception("room %s: a data listener failed", self._room.id)

        reader.on("message", heard)

    # ---- the server's own messages ------------------------------------------------

    async def send_data(self, payload: str | bytes, label: str = "chat") -> None:
        """Send ``payload`` to every joined peer that receives data, on the server's
        data producer of ``label`` (ordered, reliable)."""
        data_producer = await self._server_producer(label)
        await data_producer.send(payload)

    async def _server_producer(self, label: str) -> DataProducer:
        task = self._server_producers.get(label)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.create_task(self._make_server_producer(label))
            self._server_producers[label] = task
        data_producer = await asyncio.shield(task)
        if data_producer.closed:
            self._server_producers.pop(label, None)
            return await self._server_producer(label)
        return data_producer

    async def _make_server_producer(self, label: str) -> DataProducer:
        room = self._room
        transport = await room.router.direct_transport()
        data_producer = await transport.produce_data(label=label, app_data={"server": True})
        for peer in room.joined_peers():
            self.consume(peer, None, data_producer)
        return data_producer

    def _server_data_producers(self) -> list[DataProducer]:
        return [
            task.result()
            for task in self._server_producers.values()
            if task.done() and not task.cancelled() and task.exception() is None
        ]

    # ---- producing -------------------------------------------------------------

    @staticmethod
    def may_produce_data(peer: Peer) -> None:
        """The token's word comes first: no data grant is 403 whatever else is wrong."""
        refusal = peer.grants.data_refusal()
        if refusal is not None:
            raise ForbiddenError(refusal)

    async def produce_data(self, peer: Peer, request: ProduceDataRequest) -> Any:
        room = self._room
        transport = room.own(peer, peer.transports, "transport", request.transport_id)
        limit = room.limits.max_producers_per_peer
        if len(peer.data_producers) >= limit:
            raise LimitError(f"a peer may have at most {limit} data producers")
        data_producer = await transport.produce_data(
            sctp_stream_parameters=request.sctp_stream_parameters,
            label=request.label,
            protocol=request.protocol,
            app_data=request.app_data,
        )
        if data_producer.closed:
            raise InvalidStateError("the transport closed")
        peer.data_producers[data_producer.id] = data_producer
        data_producer.observer.on("close", lambda: peer.data_producers.pop(data_producer.id, None))
        for other in room.joined_peers(excluding=peer):
            self.consume(other, peer, data_producer)
        if self._listeners:
            await self._read(peer, data_producer)
        return {"id": data_producer.id}

    # ---- consuming ---------------------------------------------------------------

    def consume_all(self, consumer_peer: Peer, producer_peers: Iterable[Peer]) -> None:
        """``consumer_peer`` consumes every data producer of ``producer_peers``."""
        for producer_peer in producer_peers:
            for data_producer in list(producer_peer.data_producers.values()):
                self.consume(consumer_peer, producer_peer, data_producer)
        for data_producer in self._server_data_producers():
            self.consume(consumer_peer, None, data_producer)

    def consume(
        self, consumer_peer: Peer, producer_peer: Peer | None, data_producer: DataProducer
    ) -> None:
        """Start consuming ``data_producer`` for ``consumer_peer`` (in a task), unless
        it does already, it is its own, or it has no SCTP to receive on (yet)."""
        if (
            data_producer.id in consumer_peer.consumed_data_producer_ids
            or consumer_peer is producer_peer
            or consumer_peer.sctp_capabilities is None
            or not consumer_peer.grants.can_subscribe
        ):
            return
        transport = consumer_peer.consuming_transport()
        if transport is None or transport.sctp_parameters is None:
            return  # consumed when the peer creates a consuming transport with SCTP
        consumer_peer.consumed_data_producer_ids.add(data_producer.id)
        task = asyncio.create_task(self._subscribe(consumer_peer, producer_peer, data_producer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _subscribe(
        self, consumer_peer: Peer, producer_peer: Peer | None, data_producer: DataProducer
    ) -> None:
        room = self._room
        transport = consumer_peer.consuming_transport()
        if transport is None or data_producer.closed or consumer_peer.closed:
            consumer_peer.consumed_data_producer_ids.discard(data_producer.id)
            return
        peer_id = producer_peer.id if producer_peer is not None else None
        try:
            source_router = data_producer.transport.router
            if source_router is not transport.router:
                # The consumer's transport is on another worker: the data goes there first.
                await source_router.pipe_data_to_router(data_producer.id, transport.router)
            # Paused until the client has its data channel: nothing is sent into the void.
            data_consumer = await transport.consume_data(
                data_producer_id=data_producer.id,
                paused=True,
                app_data={"peerId": peer_id, "dataProducerId": data_producer.id},
            )
        except SfuError as error:
            logger.warning(
                "room %s: consumeData for %s failed: %s", room.id, consumer_peer.id, error
            )
            consumer_peer.consumed_data_producer_ids.discard(data_producer.id)
            return
        if data_consumer.closed:
            consumer_peer.consumed_data_producer_ids.discard(data_producer.id)
            return
        self._track(consumer_peer, data_consumer)
        await self._offer(consumer_peer, producer_peer, data_producer, data_consumer)

    def _track(self, consumer_peer: Peer, data_consumer: DataConsumer) -> None:
        consumer_peer.data_consumers[data_consumer.id] = data_consumer
        data_producer_id = data_consumer.data_producer_id

        def forget() -> None:
            consumer_peer.data_consumers.pop(data_consumer.id, None)
            consumer_peer.consumed_data_producer_ids.discard(data_producer_id)

        def closed_by_server(*_: Any) -> None:
            forget()
            consumer_peer.connection.notify(
                "dataConsumerClosed", {"dataConsumerId": data_consumer.id}
            )

        data_consumer.on("transportclose", forget)
        data_consumer.on("dataproducerclose", closed_by_server)
        data_consumer.on("serverclose", closed_by_server)

    def close_data_consumers(self, peer: Peer) -> None:
        """Close every data consumer of ``peer`` (it may no longer subscribe); it
        gets ``dataConsumerClosed`` for each."""
        for data_consumer in list(peer.data_consumers.values()):
            data_consumer.close()
            peer.data_consumers.pop(data_consumer.id, None)
            peer.consumed_data_producer_ids.discard(data_consumer.data_producer_id)
            peer.connection.notify("dataConsumerClosed", {"dataConsumerId": data_consumer.id})

    async def _offer(
        self,
        consumer_peer: Peer,
        producer_peer: Peer | None,
        data_producer: DataProducer,
        data_consumer: DataConsumer,
    ) -> None:
        """``newDataConsumer`` to the client; once it answers, messages flow."""
        room = self._room
        try:
            await consumer_peer.connection.request(
                "newDataConsumer",
                {
                    "peerId": producer_peer.id if producer_peer is not None else None,
                    "dataProducerId": data_producer.id,
                    "id": data_consumer.id,
                    "sctpStreamParameters": (
                        data_consumer.sctp_stream_parameters.to_wire()
                        if data_consumer.sctp_stream_parameters is not None
                        else None
                    ),
                    "label": data_consumer.label,
                    "protocol": data_consumer.protocol,
                    "appData": data_producer.app_data,
                },
                response_timeout=room.settings.consumer_request_timeout,
            )
        except ProtooRequestError as error:
            logger.warning(
                "room %s: peer %s refused newDataConsumer: %s", room.id, consumer_peer.id, error
            )
            data_consumer.close()
            consumer_peer.data_consumers.pop(data_consumer.id, None)
            consumer_peer.consumed_data_producer_ids.discard(data_producer.id)
            return
        if not data_consumer.closed:
            try:
                await data_consumer.resume()
            except SfuError as error:
                logger.info("room %s: resuming data consumer: %s", room.id, error)

    def close(self) -> None:
        for task in [*self._tasks, *self._server_producers.values()]:
            task.cancel()

    # ---- requests ----------------------------------------------------------------

    async def get_data_producer_stats(self, peer: Peer, request: DataProducerRequest) -> Any:
        room = self._room
        data_producer = room.own(
            peer, peer.data_producers, "dataProducer", request.data_producer_id
        )
        return await data_producer.get_stats()

    async def get_data_consumer_stats(self, peer: Peer, request: DataConsumerRequest) -> Any:
        room = self._room
        data_consumer = room.own(
            peer, peer.data_consumers, "dataConsumer", request.data_consumer_id
        )
        return await data_consumer.get_stats()
