"""Subscriptions: every joined peer consumes every other peer's producers
("auto-consume"), one consumer per remote producer, and controls its consumers
(pause/resume, preferred layers, priority, key frames, stats).

A consumer starts paused; the server sends ``newConsumer`` and resumes it once
the client answers, so the first packets find the client's consumer ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..control.consumer import Consumer
from ..control.producer import Producer
from ..errors import SfuError
from ..signaling.protoo import ProtooRequestError
from .peer import Peer
from .requests import ConsumerRequest, SetConsumerPreferredLayersRequest, SetConsumerPriorityRequest

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)


class Subscriptions:
    def __init__(self, room: Room) -> None:
        self._room = room
        self._tasks: set[asyncio.Task[None]] = set()

    def consume_all(self, consumer_peer: Peer, producer_peers: Iterable[Peer]) -> None:
        """``consumer_peer`` consumes every producer (and data producer) of ``producer_peers``."""
        producer_peers = list(producer_peers)
        media = [
            task
            for producer_peer in producer_peers
            for producer in list(producer_peer.producers.values())
            if (task := self.consume(consumer_peer, producer_peer, producer)) is not None
        ]
        if not media:
            self._room.data.consume_all(consumer_peer, producer_peers)
            return
        # Data consumers once the media ones are answered: with a data channel as
        # its first m-section, an aiortc client (pymediasoup) could bind its media
        # receivers to a transport that BUNDLE then replaced, and receive no media.
        task = asyncio.create_task(self._consume_data_after(consumer_peer, producer_peers, media))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume_data_after(
        self, consumer_peer: Peer, producer_peers: list[Peer], media: list[asyncio.Task[None]]
    ) -> None:
        await asyncio.gather(*media, return_exceptions=True)
        if not consumer_peer.closed:
            self._room.data.consume_all(consumer_peer, producer_peers)

    def consume(
        self, consumer_peer: Peer, producer_peer: Peer, producer: Producer
    ) -> asyncio.Task[None] | None:
        """Start consuming ``producer`` for ``consumer_peer`` (in a task, returned),
        unless it does already, it is its own, or it cannot consume yet."""
        if (
            producer.id in consumer_peer.consumed_producer_ids
            or consumer_peer is producer_peer
            or consumer_peer.rtp_capabilities is None
            or not consumer_peer.grants.can_subscribe
        ):
            return None
        if consumer_peer.consuming_transport() is None:
            return None  # consumed when the peer creates its consuming transport
        consumer_peer.consumed_producer_ids.add(producer.id)
        task = asyncio.create_task(self._subscribe(consumer_peer, producer_peer, producer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close_consumers(self, peer: Peer) -> None:
        """Close every consumer of ``peer`` (it may no longer subscribe); it gets
        ``consumerClosed`` for each."""
        for consumer in list(peer.consumers.values()):
            consumer.close()
            self._forget(peer, consumer, consumer.producer_id)
            peer.connection.notify("consumerClosed", {"consumerId": consumer.id})
        # Consumers still being made are closed when they land (see _subscribe).
        peer.consumed_producer_ids.clear()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _subscribe(
        self, consumer_peer: Peer, producer_peer: Peer, producer: Producer
    ) -> None:
        consumer = await self._create_consumer(consumer_peer, producer_peer, producer)
        if consumer is None:
            return
        if not consumer_peer.grants.can_subscribe:  # revoked while it was being made
            consumer.close()
            consumer_peer.consumed_producer_ids.discard(producer.id)
            return
        self._track(consumer_peer, consumer, producer.id)
        await self._offer(consumer_peer, producer_peer, producer, consumer)

    async def _create_consumer(
        self, consumer_peer: Peer, producer_peer: Peer, producer: Producer
    ) -> Consumer | None:
        """A paused consumer of ``producer`` on ``consumer_peer``'s consuming
        transport, or None when there can be none (now)."""
        room = self._room
        transport = consumer_peer.consuming_transport()
        capabilities = consumer_peer.rtp_capabilities
        if transport is None or capabilities is None or producer.closed or consumer_peer.closed:
            consumer_peer.consumed_producer_ids.discard(producer.id)
            return None
        if not producer.transport.router.can_consume(producer.id, capabilities):
            logger.info(
                "room %s: peer %s cannot consume producer %s (no common codec)",
                room.id,
                consumer_peer.id,
                producer.id,
            )
            # Stays marked consumed: asking again would not find a common codec either.
            return None
        try:
            # The consumer's transport may be on another worker: pipe the producer there.
            await room.placement.pipe(producer, transport.router)
            consumer = await transport.consume(
                producer_id=producer.id,
                rtp_capabilities=capabilities,
                paused=True,
                app_data={"peerId": producer_peer.id, "producerId": producer.id},
            )
        except SfuError as error:
            logger.warning("room %s: consume for %s failed: %s", room.id, consumer_peer.id, error)
            consumer_peer.consumed_producer_ids.discard(producer.id)
            return None
        if consumer.closed:  # its producer closed while the worker answered
            consumer_peer.consumed_producer_ids.discard(producer.id)
            return None
        return consumer

    def _track(self, consumer_peer: Peer, consumer: Consumer, producer_id: str) -> None:
        """Keep ``consumer_peer``'s books on ``consumer`` and tell the peer what
        happens to it (on its current connection: it may resume on a new one)."""
        consumer_peer.consumers[consumer.id] = consumer

        def forget() -> None:
            self._forget(consumer_peer, consumer, producer_id)

        def on_producer_close() -> None:
            forget()
            consumer_peer.connection.notify("consumerClosed", {"consumerId": consumer.id})

        def notify(method: str) -> None:
            consumer_peer.connection.notify(method, {"consumerId": consumer.id})

        consumer.on("transportclose", forget)
        consumer.on("producerclose", on_producer_close)
        consumer.on("serverclose", lambda reason: on_producer_close())
        consumer.on("producerpause", lambda: notify("consumerPaused"))
        consumer.on("producerresume", lambda: notify("consumerResumed"))

        def on_layers_change(layers: dict[str, int] | None) -> None:
            consumer_peer.connection.notify(
                "consumerLayersChanged",
                {
                    "consumerId": consumer.id,
                    "spatialLayer": layers["spatialLayer"] if layers else None,
                    "temporalLayer": layers["temporalLayer"] if layers else None,
                },
            )

        consumer.on("layerschange", on_layers_change)

    @staticmethod
    def _forget(consumer_peer: Peer, consumer: Consumer, producer_id: str) -> None:
        consumer_peer.consumers.pop(consumer.id, None)
        consumer_peer.consumed_producer_ids.discard(producer_id)

    async def _offer(
        self, consumer_peer: Peer, producer_peer: Peer, producer: Producer, consumer: Consumer
    ) -> None:
        """``newConsumer`` to the client; once it answers, the consumer starts sending."""
        room = self._room
        try:
            await consumer_peer.connection.request(
                "newConsumer",
                {
                    "peerId": producer_peer.id,
                    "producerId": producer.id,
                    "id": consumer.id,
                    "kind": consumer.kind,
                    "rtpParameters": consumer.rtp_parameters,
                    "type": consumer.type,
                    "appData": producer.app_data,
                    "producerPaused": consumer.producer_paused,
                },
                response_timeout=room.settings.consumer_request_timeout,
            )
        except ProtooRequestError as error:
            logger.warning(
                "room %s: peer %s refused newConsumer: %s", room.id, consumer_peer.id, error
            )
            consumer.close()
            self._forget(consumer_peer, consumer, producer.id)
            return
        if not consumer.closed:
            # The client's consumer exists: start sending (a keyframe is requested).
            try:
                await consumer.resume()
            except SfuError as error:  # closed in the worker meanwhile; its close event follows
                logger.info("room %s: resuming consumer %s: %s", room.id, consumer.id, error)

    # ---- requests ------------------------------------------------------------

    def _consumer(self, peer: Peer, request: ConsumerRequest) -> Consumer:
        return self._room.own(peer, peer.consumers, "consumer", request.consumer_id)

    async def pause_consumer(self, peer: Peer, request: ConsumerRequest) -> Any:
        await self._consumer(peer, request).pause()
        return {}

    async def resume_consumer(self, peer: Peer, request: ConsumerRequest) -> Any:
        # Idempotent: mediasoup-client may ask after the server already resumed it.
        await self._consumer(peer, request).resume()
        return {}

    async def set_consumer_preferred_layers(
        self, peer: Peer, request: SetConsumerPreferredLayersRequest
    ) -> Any:
        consumer = self._consumer(peer, request)
        await consumer.set_preferred_layers(request.spatial_layer, request.temporal_layer)
        return {}

    async def set_consumer_priority(self, peer: Peer, request: SetConsumerPriorityRequest) -> Any:
        await self._consumer(peer, request).set_priority(request.priority)
        return {}

    async def request_consumer_key_frame(self, peer: Peer, request: ConsumerRequest) -> Any:
        await self._consumer(peer, request).request_key_frame()
        return {}

    async def get_consumer_stats(self, peer: Peer, request: ConsumerRequest) -> Any:
        return await self._consumer(peer, request).get_stats()
