"""WebRtcTransport: the control handle on a worker's WebRTC transport (mediasoup's WebRtcTransport.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from ..channel.messages import (
    ConnectWebRtcTransportRequest,
    Event,
    Method,
    WebRtcTransportCreated,
)
from .transport import Transport

if TYPE_CHECKING:
    from .router import Router


class WebRtcTransport(Transport):
    """Also ``icestatechange(state)`` and ``dtlsstatechange(state)``."""

    def __init__(
        self,
        channel: Channel,
        info: WebRtcTransportCreated,
        router: Router,
        app_data: dict[str, Any],
    ) -> None:
        super().__init__(channel, info["id"], router, app_data)
        self.ice_parameters = info["iceParameters"]
        self.ice_candidates = info["iceCandidates"]
        self.dtls_parameters = info["dtlsParameters"]
        self.sctp_parameters = info["sctpParameters"]
        self.ice_state = info["iceState"]
        self.dtls_state = info["dtlsState"]

    async def connect(self, dtls_parameters: dict[str, Any]) -> None:
        await self._request(
            Method.TRANSPORT_CONNECT, ConnectWebRtcTransportRequest(dtlsParameters=dtls_parameters)
        )

    async def restart_ice(self) -> dict[str, Any]:
        self.ice_parameters = await self._request(Method.TRANSPORT_RESTART_ICE)
        return self.ice_parameters

    def on_notification(self, event: str, data: Any) -> None:
        if event == Event.ICE_STATE_CHANGE:
            self.ice_state = str(data)
            self.emit("icestatechange", data)
        elif event == Event.DTLS_STATE_CHANGE:
            self.dtls_state = str(data)
            self.emit("dtlsstatechange", data)
        else:
            super().on_notification(event, data)
