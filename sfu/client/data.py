"""The client's data channels: data producers it sends on, and a data consumer
for each ``newDataConsumer`` the server sends (pymediasoup's DataProducer and
DataConsumer, on aiortc's SCTP).

:meth:`SfuClient.send_data` sends on the data producer of a label, made on
first use (label ``chat``, ordered, by default). Every message received fires
the client's ``data`` event with a :class:`DataMessage`;
``dataconsumerclosed(data_consumer_id)`` when the server closes one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pymediasoup.sctp_parameters import SctpStreamParameters

from sfu.client.protoo import ProtooConnection, ProtooError
from sfu.client.transports import Transports

if TYPE_CHECKING:
    from sfu.client.client import SfuClient

__all__ = ["DataChannels", "DataMessage", "RemoteDataConsumer"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataMessage:
    """One message received: text (str) or binary (bytes), from whom and on what label."""

    data: str | bytes
    peer_id: str | None
    label: str
    data_consumer_id: str
    data_producer_id: str


@dataclass(eq=False)
class RemoteDataConsumer:
    id: str
    data_producer_id: str
    peer_id: str | None
    label: str
    protocol: str
    data_consumer: Any  # pymediasoup.data_consumer.DataConsumer
    app_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataOptions:
    """How a data producer sends: mediasoup's ordered, maxPacketLifeTime, maxRetransmits."""

    ordered: bool = True
    max_packet_life_time: int | None = None
    max_retransmits: int | None = None
    protocol: str = ""


class DataChannels:
    def __init__(self, client: SfuClient, transports: Transports) -> None:
        self._client = client
        self._transports = transports
        # pymediasoup DataProducers by label, and their ids.
        self.data_producers: dict[str, Any] = {}
        self.data_consumers: dict[str, RemoteDataConsumer] = {}
        self._making: dict[str, asyncio.Task[Any]] = {}

    def install(self, protoo: ProtooConnection) -> None:
        protoo.on_request("newDataConsumer", self._on_new_data_consumer)
        protoo.on_notification("dataConsumerClosed", self._on_data_consumer_closed)

    # --- sending ---------------------------------------------------------------------

    async def produce_data(self, label: str, options: DataOptions, app_data: dict[str, Any]) -> Any:
        """A new data producer on the send transport (the pymediasoup DataProducer)."""
        transport = self._transports.send
        if transport is None:
            raise RuntimeError("no send transport (not joined, or produce=False)")
        async with self._transports.send_lock:
            data_producer = await transport.produceData(
                ordered=options.ordered,
                maxPacketLifeTime=options.max_packet_life_time,
                maxRetransmits=options.max_retransmits,
                label=label,
                protocol=options.protocol,
                appData=app_data,
            )
        self.data_producers[label] = data_producer
        data_producer.on("transportclose", lambda: self.data_producers.pop(label, None))
        return data_producer

    async def send(
        self,
        message: str | bytes,
        label: str,
        options: DataOptions | None,
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        data_producer: Any = self.data_producers.get(label)
        if data_producer is None:
            task = self._making.get(label)
            if task is None:
                task = self._client._spawn(self.produce_data(label, options or DataOptions(), {}))
                self._making[label] = task
                task.add_done_callback(lambda _: self._making.pop(label, None))
            data_producer = await asyncio.shield(task)
        if data_producer.readyState != "open":
            opened = asyncio.Event()
            data_producer.once("open", opened.set)
            if data_producer.readyState != "open":
                await asyncio.wait_for(opened.wait(), timeout)
        data_producer.send(message)

    # --- receiving ---------------------------------------------------------------------

    async def _on_new_data_consumer(self, data: dict[str, Any]) -> dict[str, Any]:
        transport = self._transports.recv
        if not self._client.consume_enabled or transport is None:
            raise ProtooError(403, "I do not want to consume")
        consumer_id = data.get("id")
        data_producer_id = data.get("dataProducerId")
        stream = data.get("sctpStreamParameters")
        if not isinstance(consumer_id, str) or not isinstance(data_producer_id, str):
            raise ProtooError(400, "newDataConsumer: id and dataProducerId must be strings")
        if not isinstance(stream, dict):
            raise ProtooError(400, "newDataConsumer: sctpStreamParameters must be an object")
        peer_id = data.get("peerId")
        label = str(data.get("label") or "")
        protocol = str(data.get("protocol") or "")
        app_data = data.get("appData") if isinstance(data.get("appData"), dict) else {}
        async with self._transports.recv_lock:
            data_consumer = await transport.consumeData(
                id=consumer_id,
                dataProducerId=data_producer_id,
                sctpStreamParameters=SctpStreamParameters.model_validate(stream),
                label=label,
                protocol=protocol,
                appData=app_data,
            )
        remote = RemoteDataConsumer(
            id=consumer_id,
            data_producer_id=data_producer_id,
            peer_id=peer_id if isinstance(peer_id, str) else None,
            label=label,
            protocol=protocol,
            data_consumer=data_consumer,
            app_data=dict(app_data or {}),
        )
        self.data_consumers[consumer_id] = remote

        def on_message(message: str | bytes) -> None:
            self._client._fire(
                "data",
                DataMessage(message, remote.peer_id, label, consumer_id, data_producer_id),
            )

        data_consumer.on("message", on_message)
        data_consumer.on("transportclose", lambda: self.data_consumers.pop(consumer_id, None))
        return {}

    def _on_data_consumer_closed(self, data: dict[str, Any]) -> None:
        consumer_id = data.get("dataConsumerId")
        if not isinstance(consumer_id, str):
            return
        remote = self.data_consumers.pop(consumer_id, None)
        if remote is not None:
            self._client._spawn(remote.data_consumer.close())
        self._client._fire("dataconsumerclosed", consumer_id)

    def drop(self) -> None:
        """The transports are gone: so are the data producers and consumers."""
        self.data_producers.clear()
        self.data_consumers.clear()
