"""DirectTransport: data producers and consumers with no network (mediasoup's DirectTransport).

The server itself sends on a direct data producer (``dataProducer.send``,
a channel request) and reads a direct data consumer's messages (channel
notifications to its handle). Rooms use it for their own messages, and to
carry a data producer to a router on another worker (control
``Router.pipe_data_to_router``). No RTP: producing media here is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel.messages import Created, Method
from ..errors import UnsupportedError
from .transport import Transport

if TYPE_CHECKING:
    from .router import Router


class DirectTransport(Transport):
    """Events: ``routerclose``, ``@close``."""

    direct = True

    def __init__(self, *, router: Router, app_data: dict[str, Any]) -> None:
        super().__init__(router=router, app_data=app_data)

    async def handle_request(self, method: Method, data: Any) -> Any:
        if method in (Method.TRANSPORT_PRODUCE, Method.TRANSPORT_CONSUME):
            raise UnsupportedError("a direct transport carries data only")
        return await super().handle_request(method, data)

    def info(self) -> Created:
        return Created(id=self.id)

    def send_rtp(self, packet: bytes) -> None:
        raise UnsupportedError("a direct transport carries data only")

    def send_rtcp(self, packet: bytes) -> None:
        return None

    def _rtcp_ready(self) -> bool:
        return False

    def close(self, reason: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._close_children()
        self.emit_close()

    def get_stats(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "direct-transport",
                "transportId": self.id,
                "dataProducers": len(self.data_producers),
                "dataConsumers": len(self.data_consumers),
            }
        ]
