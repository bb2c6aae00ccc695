"""DataConsumer: one data producer's messages, sent to a client on an SCTP
stream the server chose (mediasoup's DataConsumer).

Its send buffer is bounded (``media.sctp_send_buffer_size``, aiortc's
``bufferedAmount``): over it, a message on a partially reliable stream is
dropped and counted; a reliable stream may hold up to twice as much while
its reader catches up, and is closed (``serverclose "stalled"``, the room
tells the peer ``dataConsumerClosed``) when it stays over the buffer for
``media.sctp_stall_timeout`` seconds or reaches twice the buffer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..channel.messages import Event, Method
from ..models import SctpStreamParameters
from .entity import MediaEntity

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

    from .data_producer import DataProducer


class DataConsumer(MediaEntity):
    """Events: ``@close``."""

    def __init__(
        self,
        *,
        data_producer: DataProducer,
        stream: SctpStreamParameters,
        channel: RTCDataChannel,
        paused: bool,
        app_data: dict[str, Any],
        buffer_size: int,
        stall_timeout: float,
    ) -> None:
        super().__init__()
        self.id = str(uuid.uuid4())
        self.data_producer = data_producer
        self.stream = stream
        self.paused = paused
        self.producer_paused = data_producer.paused
        self.app_data = app_data
        self.closed = False
        self._channel = channel
        self._buffer_size = buffer_size
        self._stall_timeout = stall_timeout
        self._stall_timer: asyncio.TimerHandle | None = None
        self.messages_sent = 0
        self.bytes_sent = 0
        self.drops: Counter[str] = Counter()
        # bufferedamountlow fires when the buffer drains to half: the reader caught up.
        channel.bufferedAmountLowThreshold = buffer_size // 2
        channel.on("bufferedamountlow", self._drained)

    @property
    def buffered_amount(self) -> int:
        return self._channel.bufferedAmount

    def send(self, message: str | bytes) -> None:
        if self.closed:
            return
        if self.paused:
            self.drops["paused"] += 1
            return
        channel = self._channel
        if channel.readyState != "open":
            self.drops["not-open"] += 1
            return
        size = len(message)
        buffered = channel.bufferedAmount
        if buffered + size > self._buffer_size:
            if not self.stream.reliable:
                self.drops["buffer-full"] += 1
                return
            if buffered + size > 2 * self._buffer_size:
                self.drops["buffer-full"] += 1
                self.close(reason="stalled")
                return
            if self._stall_timer is None:
                self._stall_timer = asyncio.get_running_loop().call_later(
                    self._stall_timeout, self._stalled
                )
        channel.send(message)
        self.messages_sent += 1
        self.bytes_sent += size

    def _drained(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        if self._channel.bufferedAmount > self._buffer_size:
            self.close(reason="stalled")

    def data_producer_paused(self, paused: bool) -> None:
        self.producer_paused = paused
        self.notify(Event.PRODUCER_PAUSE if paused else Event.PRODUCER_RESUME)

    async def handle_request(self, method: Method, data: Any) -> Any:
        match method:
            case Method.DATA_CONSUMER_PAUSE:
                self.paused = True
                return None
            case Method.DATA_CONSUMER_RESUME:
                self.paused = False
                return None
            case Method.DATA_CONSUMER_GET_STATS:
                return self.get_stats()
            case Method.DATA_CONSUMER_CLOSE:
                self.close()
                return None
        return await super().handle_request(method, data)

    def get_stats(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "data-consumer",
                "timestamp": int(time.time() * 1000),
                "label": self.data_producer.label,
                "protocol": self.data_producer.protocol,
                "messagesSent": self.messages_sent,
                "bytesSent": self.bytes_sent,
                "bufferedAmount": self._channel.bufferedAmount,
                "droppedMessages": dict(self.drops),
            }
        ]

    def counters(self) -> Counter[str]:
        totals: Counter[str] = Counter(
            data_messages_sent=self.messages_sent, data_bytes_sent=self.bytes_sent
        )
        for reason, count in self.drops.items():
            totals[f"data_dropped:{reason}"] += count
        return totals

    def data_producer_closed(self) -> None:
        """Its data producer closed: so does it, and the handle hears why."""
        if not self.closed:
            self.notify(Event.DATA_PRODUCER_CLOSE)
            self.close()

    def close(self, reason: str | None = None) -> None:
        """Close the stream (an SCTP stream reset). ``reason`` when the server
        closes it on its own (``serverclose``)."""
        if self.closed:
            return
        self.closed = True
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._channel.remove_all_listeners("bufferedamountlow")
        self._channel.close()
        if reason is not None:
            self.notify(Event.SERVER_CLOSE, reason)
        self.emit_close()
