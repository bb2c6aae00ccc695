"""Producer: the signaling side's handle on a producer in a worker (mediasoup's Producer.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from ..errors import InvalidStateError
from .channel_object import ChannelObject

if TYPE_CHECKING:
    from .transport import Transport


class Producer(ChannelObject):
    """Events: ``transportclose``, ``serverclose(reason)``, ``pause``, ``resume``, ``@close``."""

    prefix = "producer"

    def __init__(
        self,
        channel: Channel,
        *,
        producer_id: str,
        kind: str,
        rtp_parameters: dict[str, Any],
        consumable_rtp_parameters: dict[str, Any],
        paused: bool,
        app_data: dict[str, Any],
        transport: Transport,
        producer_type: str = "simple",
    ) -> None:
        super().__init__(channel, producer_id)
        self.kind = kind
        self.type = producer_type
        self.rtp_parameters = rtp_parameters
        # The stream as the router forwards it: what consumers' parameters come from (ORTC).
        self.consumable_rtp_parameters = consumable_rtp_parameters
        self.paused = paused
        self.app_data = app_data
        self.transport = transport

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"producer {self.id} is closed")

    async def pause(self) -> None:
        self._check_open()
        await self._request("pause")
        if not self.paused:
            self.paused = True
            self.emit("pause")

    async def resume(self) -> None:
        self._check_open()
        await self._request("resume")
        if self.paused:
            self.paused = False
            self.emit("resume")

    async def get_stats(self) -> Any:
        self._check_open()
        return await self._request("getStats")

    def on_notification(self, event: str, data: Any) -> None:
        if event == "serverclose" and self._mark_closed():
            self.emit("serverclose", data)
            self.emit("@close")
