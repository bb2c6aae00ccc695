"""DataProducer: messages a client sends on one SCTP stream (mediasoup's DataProducer).

Each message goes to the data consumers of this producer (in this router),
unless the producer is paused, the message is bigger than the configured
maximum, or its transport is over its message rate: those are dropped and
counted by reason.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..channel.messages import Method, data_payload
from ..errors import InvalidRequestError, InvalidStateError
from ..models import SctpStreamParameters
from .entity import MediaEntity

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

    from .data_consumer import DataConsumer
    from .transport import Transport


class MessageRate:
    """A token bucket of ``rate`` messages per second with a one-second burst (0: no limit)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._tokens = float(rate)
        self._last = time.monotonic()

    def take(self) -> bool:
        if not self.rate:
            return True
        now = time.monotonic()
        self._tokens = min(float(self.rate), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass(frozen=True)
class InboundDataLimits:
    """What one transport's client may send, on all its data producers."""

    max_message_size: int
    rate: MessageRate


class DataProducer(MediaEntity):
    """Events: ``@close``."""

    def __init__(  # noqa: PLR0913 - mediasoup's DataProducerOptions, keyword-only
        self,
        *,
        transport: Transport,
        label: str,
        protocol: str,
        stream: SctpStreamParameters | None,
        channel: RTCDataChannel | None,
        paused: bool,
        app_data: dict[str, Any],
        limits: InboundDataLimits,
        data_producer_id: str | None = None,
    ) -> None:
        super().__init__()
        self.id = data_producer_id or str(uuid.uuid4())
        self.transport = transport
        self.label = label
        self.protocol = protocol
        self.stream = stream
        self.paused = paused
        self.app_data = app_data
        self.closed = False
        self.consumers: dict[str, DataConsumer] = {}
        self._channel = channel
        self._max_message_size = limits.max_message_size
        self._rate = limits.rate
        self.type = "sctp" if channel is not None else "direct"
        self.messages_received = 0
        self.bytes_received = 0
        self.drops: Counter[str] = Counter()
        if channel is not None:
            channel.on("message", self.receive)

    def receive(self, message: str | bytes) -> None:
        """One message from the client (or, for a direct producer, from the server)."""
        if self.closed:
            return
        size = len(message)
        if size > self._max_message_size:
            self.drops["too-large"] += 1
            return
        if not self._rate.take():
            self.drops["rate-limited"] += 1
            return
        self.messages_received += 1
        self.bytes_received += size
        if self.paused:
            self.drops["paused"] += 1
            return
        for consumer in list(self.consumers.values()):
            consumer.send(message)

    def add_consumer(self, consumer: DataConsumer) -> None:
        self.consumers[consumer.id] = consumer
        consumer.on("@close", lambda: self.consumers.pop(consumer.id, None))

    async def handle_request(self, method: Method, data: Any) -> Any:
        match method:
            case Method.DATA_PRODUCER_PAUSE:
                self.set_paused(True)
                return None
            case Method.DATA_PRODUCER_RESUME:
                self.set_paused(False)
                return None
            case Method.DATA_PRODUCER_GET_STATS:
                return self.get_stats()
            case Method.DATA_PRODUCER_SEND:
                if self._channel is not None:
                    raise InvalidStateError("only a direct data producer sends the server's data")
                try:
                    self.receive(data_payload(data))
                except ValueError as error:
                    raise InvalidRequestError(str(error)) from None
                return None
            case Method.DATA_PRODUCER_CLOSE:
                self.close()
                return None
        return await super().handle_request(method, data)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        for consumer in self.consumers.values():
            consumer.data_producer_paused(paused)

    def get_stats(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "data-producer",
                "timestamp": int(time.time() * 1000),
                "label": self.label,
                "protocol": self.protocol,
                "messagesReceived": self.messages_received,
                "bytesReceived": self.bytes_received,
                "droppedMessages": dict(self.drops),
            }
        ]

    def counters(self) -> Counter[str]:
        totals: Counter[str] = Counter(
            data_messages_received=self.messages_received,
            data_bytes_received=self.bytes_received,
        )
        for reason, count in self.drops.items():
            totals[f"data_dropped:{reason}"] += count
        return totals

    def close(self) -> None:
        """Close it and its data consumers (their peers are told by the room)."""
        if self.closed:
            return
        self.closed = True
        if self._channel is not None:
            self._channel.remove_all_listeners("message")
            self._channel.close()
        for consumer in list(self.consumers.values()):
            consumer.data_producer_closed()
        self.consumers.clear()
        self.emit_close()
