"""ActiveSpeakerObserver: the signaling side's handle on a router's loudest-speaker detector."""

from __future__ import annotations

from typing import Any

from .channel_object import ChannelObject
from .producer import Producer


class ActiveSpeakerObserver(ChannelObject):
    """Events: ``dominantspeaker(producer_id, volume)``, ``silence``, ``@close``."""

    prefix = "observer"

    async def add_producer(self, producer: Producer) -> None:
        if not self.closed:
            await self._request("addProducer", {"producerId": producer.id})

    def router_closed(self) -> None:
        if self._mark_closed():
            self.emit("@close")

    def on_notification(self, event: str, data: Any) -> None:
        if event == "dominantspeaker" and isinstance(data, dict):
            self.emit("dominantspeaker", data.get("producerId"), data.get("volume"))
        elif event == "silence":
            self.emit("silence")
