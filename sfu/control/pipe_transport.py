"""PipeTransport: the control handle on a worker's pipe transport (mediasoup's PipeTransport.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from ..channel.messages import ConnectPipeTransportRequest, Method, PipeTransportCreated
from ..errors import NotFoundError
from . import ortc
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
        self._check_open()
        producer = self.router.producers.get(producer_id)
        if producer is None:
            raise NotFoundError(f"producer {producer_id} not found")
        # Every simulcast layer on its own encoding (ortc.get_pipe_consumer_rtp_parameters).
        rtp_parameters = ortc.get_pipe_consumer_rtp_parameters(
            producer.consumable_rtp_parameters, self.router.rtp_capabilities
        )
        consumer = await self._consume(producer_id, rtp_parameters, False, {"pipe": True})
        consumer.type = "pipe"
        return consumer

    async def connect(self, ip: str, port: int) -> None:
        await self._request(Method.TRANSPORT_CONNECT, ConnectPipeTransportRequest(ip=ip, port=port))
