"""ActiveSpeakerObserver: the loudest audio producer, from RFC 6464 audio levels.

Producers hand it each packet's audio level (0 = loudest, 127 = silence, in
-dBov). Every ``interval`` it averages them per producer and picks the
loudest above a threshold, with hysteresis so that the speaker does not
flicker between two people talking at once. Notifications:
``dominantspeaker({producerId, volume})`` and ``silence``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from ..channel.messages import AddProducerRequest, DominantSpeaker, Event, Method
from ..errors import NotFoundError
from .entity import MediaEntity

if TYPE_CHECKING:
    from .producer import Producer
    from .router import Router

# Quieter than this (dBov) is silence.
DEFAULT_THRESHOLD = -60
# A new speaker must be this much louder (dB) than the current one to take over.
SWITCH_MARGIN = 6


class ActiveSpeakerObserver(MediaEntity):
    def __init__(
        self,
        *,
        router: Router,
        interval: float = 0.3,
        threshold: int = DEFAULT_THRESHOLD,
        app_data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.id = str(uuid.uuid4())
        self.router = router
        self.interval = interval
        self.threshold = threshold
        self.app_data = app_data or {}
        self.closed = False
        self.paused = False
        self.dominant: Producer | None = None
        self._producers: dict[str, Producer] = {}
        # producer id -> [sum of levels, count] in the current interval
        self._levels: dict[str, list[int]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    async def add_producer(self, producer: Producer) -> None:
        if producer.kind != "audio" or self.closed:
            return
        self._producers[producer.id] = producer
        producer.audio_level_sink = self._on_audio_level

    async def remove_producer(self, producer: Producer) -> None:
        self.forget_producer(producer)

    def forget_producer(self, producer: Producer) -> None:
        if self._producers.pop(producer.id, None) is None:
            return
        if producer.audio_level_sink == self._on_audio_level:
            producer.audio_level_sink = None
        self._levels.pop(producer.id, None)
        if self.dominant is producer:
            self.dominant = None
            self.notify(Event.SILENCE)

    async def pause(self) -> None:
        self.paused = True

    async def resume(self) -> None:
        self.paused = False

    def _on_audio_level(self, producer: Producer, level: int) -> None:
        # Called per audio packet: keep it to two integer additions.
        acc = self._levels.get(producer.id)
        if acc is None:
            self._levels[producer.id] = [level, 1]
        else:
            acc[0] += level
            acc[1] += 1

    def _tick(self) -> None:
        if self.closed:
            return
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)
        levels, self._levels = self._levels, {}
        if self.paused:
            return
        volumes = {
            pid: -(total / count)
            for pid, (total, count) in levels.items()
            if count and pid in self._producers and not self._producers[pid].paused
        }
        loud = {pid: v for pid, v in volumes.items() if v >= self.threshold}
        if not loud:
            if self.dominant is not None:
                self.dominant = None
                self.notify(Event.SILENCE)
            return
        best_id = max(loud, key=lambda pid: loud[pid])
        best_volume = loud[best_id]
        current = self.dominant
        if current is not None and current.id != best_id:
            current_volume = loud.get(current.id)
            if current_volume is not None and best_volume - current_volume < SWITCH_MARGIN:
                return  # the current speaker is still talking: keep them
        if current is None or current.id != best_id:
            self.dominant = self._producers[best_id]
            self.notify(
                Event.DOMINANT_SPEAKER,
                DominantSpeaker(producerId=self.dominant.id, volume=round(best_volume)),
            )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        for producer in self._producers.values():
            if producer.audio_level_sink == self._on_audio_level:
                producer.audio_level_sink = None
        self._producers.clear()
        self.emit_close()

    async def handle_request(self, method: Method, data: Any) -> Any:
        match method:
            case Method.OBSERVER_ADD_PRODUCER:
                request: AddProducerRequest = data
                producer = self.router.producers.get(request["producerId"])
                if producer is None:
                    raise NotFoundError(f"producer {request['producerId']} not found")
                await self.add_producer(producer)
            case Method.OBSERVER_CLOSE:
                self.close()
            case _:
                return await super().handle_request(method, data)
        return None
