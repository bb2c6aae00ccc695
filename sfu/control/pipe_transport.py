"""PipeTransport: the control handle on a worker's pipe transport (mediasoup's PipeTransport.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from .transport import Transport

if TYPE_CHECKING:
    from .router import Router


class PipeTransport(Transport):
    """Plain RTP toward a router of another worker; ``ip``/``port`` is its local end."""

    def __init__(
        self, channel: Channel, info: dict[str, Any], router: Router, app_data: dict[str, Any]
    ) -> None:
        super().__init__(channel, info["id"], router, app_data)
        self.ip: str = info["ip"]
        self.port: int = info["port"]

    async def connect(self, ip: str, port: int) -> None:
        self._check_open()
        await self._request("connect", {"ip": ip, "port": port})
