"""PipeTransport: the control handle on a worker's pipe transport (mediasoup's PipeTransport.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from ..channel.messages import ConnectPipeTransportRequest, Method, PipeTransportCreated
from .consumer import Consumer
from .transport import Transport

if TYPE_CHECKING:
    from .router import Router


class PipeTransport(Transport):
    """Plain RTP toward a router of another worker; ``ip``/``port`` is its local end."""

    def __init__(
        self,
        channel: Channel,
        info: PipeTransportCreated,
        router: Router,
        app_data: dict[str, Any],
    ) -> None:
        super().__init__(channel, info["id"], router, app_data)
        self.ip = info["ip"]
        self.port = info["port"]

    async def consume_pipe(self, producer_id: str) -> Consumer:
        """A pipe consumer: every codec and header extension of the router, never
        paused, and no MID (the SSRCs identify the streams on a pipe)."""
        rtp_parameters = self._consumer_rtp_parameters(producer_id, self.router.rtp_capabilities)
        return await self._consume(producer_id, rtp_parameters, False, {"pipe": True})

    async def connect(self, ip: str, port: int) -> None:
        await self._request(Method.TRANSPORT_CONNECT, ConnectPipeTransportRequest(ip=ip, port=port))
