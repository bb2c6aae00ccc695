"""DataConsumer: one data producer's messages, sent to a client on an SCTP
stream the server chose (mediasoup's DataConsumer).

Its send buffer is bounded (``media.sctp_send_buffer_size``, aiortc's
``bufferedAmount``): over it, a message on a partially reliable stream is
dropped and counted; a reliable stream may hold up to twice as much while
its reader catches up, and is closed (``serverclose "stalled"``, the room
tells the peer ``dataConsumerClosed``) when it stays over the buffer for
``media.sctp_stall_timeout`` seconds or reaches twice the buffer.

Messages are held (within the same bound) until the client has its end: while
the SCTP association is still connecting, and, for a data consumer made
paused, until its first resume (the room resumes it once the client has
answered ``newDataConsumer``). A pause after that drops, as mediasoup's.

On a direct transport it has no stream: each message goes to its control
handle as a channel notification (the server reads it, or a pipe relays it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from ..channel.messages import Event, Method, data_message
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
        stream: SctpStreamParameters | None,
        channel: RTCDataChannel | None,
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
        # Held until the client's end exists (None once they have been sent).
        self._held: deque[str | bytes] | None = deque()
        self._held_bytes = 0
        self._awaiting_resume = paused
        if channel is None:
            self._held = None
            return
        channel.on("open", self._release)
        # bufferedamountlow fires when the buffer drains to half: the reader caught up.
        channel.bufferedAmountLowThreshold = buffer_size // 2
        channel.on("bufferedamountlow", self._drained)
        self._release()  # the association may be up already

    def send(self, message: str | bytes) -> None:
        if self.closed:
            return
        held = self._held
        if held is not None:
            if self._held_bytes + len(message) > self._buffer_size:
                self.drops["buffer-full"] += 1
            else:
                held.append(message)
                self._held_bytes += len(message)
            return
        if self.paused:
            self.drops["paused"] += 1
            return
        if self._channel is None:  # direct: to the handle
            self.messages_sent += 1
            self.bytes_sent += len(message)
            self.notify(Event.DATA_MESSAGE, data_message(message))
            return
        if self._channel.readyState != "open":
            self.drops["not-open"] += 1
            return
        self._send(message)

    def _release(self) -> None:
        """Send what was held once the stream is open and the client has its end."""
        held = self._held
        if held is None or self.closed or self._awaiting_resume:
            return
        if self._channel is None or self._channel.readyState != "open":
            return
        self._held = None
        self._held_bytes = 0
        for message in held:
            self._send(message)

    def _send(self, message: str | bytes) -> None:
        channel = self._channel
        assert channel is not None
        size = len(message)
        buffered = channel.bufferedAmount
        if buffered + size > self._buffer_size:
            if self.stream is not None and not self.stream.reliable:
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
        if self._channel is not None and self._channel.bufferedAmount > self._buffer_size:
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
                self._awaiting_resume = False
                self._release()
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
                "bufferedAmount": self._channel.bufferedAmount if self._channel else 0,
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
        self._held = None
        if self._channel is not None:
            self._channel.remove_all_listeners("bufferedamountlow")
            self._channel.remove_all_listeners("open")
            self._channel.close()
        if reason is not None:
            self.notify(Event.SERVER_CLOSE, reason)
        self.emit_close()
