"""WebRtcTransport: the control handle on a worker's WebRTC transport (mediasoup's WebRtcTransport.ts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..channel import Channel
from .transport import Transport

if TYPE_CHECKING:
    from .router import Router


class WebRtcTransport(Transport):
    """Also ``icestatechange(state)`` and ``dtlsstatechange(state)``."""

    def __init__(
        self, channel: Channel, info: dict[str, Any], router: Router, app_data: dict[str, Any]
    ) -> None:
        super().__init__(channel, info["id"], router, app_data)
        self.ice_parameters: dict[str, Any] = info["iceParameters"]
        self.ice_candidates: list[dict[str, Any]] = info["iceCandidates"]
        self.dtls_parameters: dict[str, Any] = info["dtlsParameters"]
        self.sctp_parameters: dict[str, Any] | None = info["sctpParameters"]
        self.ice_state: str = info["iceState"]
        self.dtls_state: str = info["dtlsState"]

    async def connect(self, dtls_parameters: dict[str, Any]) -> None:
        self._check_open()
        await self._request("connect", {"dtlsParameters": dtls_parameters})

    async def restart_ice(self) -> dict[str, Any]:
        self._check_open()
        self.ice_parameters = await self._request("restartIce")
        return self.ice_parameters

    def on_notification(self, event: str, data: Any) -> None:
        if event == "icestatechange":
            self.ice_state = str(data)
            self.emit(event, data)
        elif event == "dtlsstatechange":
            self.dtls_state = str(data)
            self.emit(event, data)
        else:
            super().on_notification(event, data)
