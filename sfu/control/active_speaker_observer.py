"""ActiveSpeakerObserver: the control handle on a router's loudest-speaker detector."""

from __future__ import annotations

from typing import Any

from ..channel.messages import AddProducerRequest, Event, Method
from .channel_object import ChannelObject
from .producer import Producer


class ActiveSpeakerObserver(ChannelObject):
    """Events: ``dominantspeaker(producer_id, volume)``, ``silence``, ``routerclose``, ``@close``."""

    kind_name = "observer"
    close_method = Method.OBSERVER_CLOSE

    async def add_producer(self, producer: Producer) -> None:
        if not self.closed:
            await self._request(
                Method.OBSERVER_ADD_PRODUCER, AddProducerRequest(producerId=producer.id)
            )

    def on_notification(self, event: str, data: Any) -> None:
        if event == Event.DOMINANT_SPEAKER and isinstance(data, dict):
            self.emit("dominantspeaker", data.get("producerId"), data.get("volume"))
        elif event == Event.SILENCE:
            self.emit("silence")
        else:
            super().on_notification(event, data)
