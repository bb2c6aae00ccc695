"""The client's two WebRTC transports: the pymediasoup Device, one to send and one to receive.

``connectWebRtcTransport`` goes out lazily, on a transport's first produce or
consume, and the client awaits its response *before* aiortc starts ICE and
DTLS on that transport (pymediasoup itself would fire it and go on).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from aiortc import RTCIceServer
from pymediasoup import Device
from pymediasoup.handlers.aiortc_handler import AiortcHandler
from pymediasoup.models.transport import DtlsParameters, IceCandidate, IceParameters
from pymediasoup.rtp_parameters import RtpCapabilities
from pymediasoup.sctp_parameters import SctpParameters

from sfu.aiortc_adapter import disable_media_section_recycling
from sfu.client.protoo import ProtooConnection, ProtooError

if TYPE_CHECKING:
    from sfu.client.client import SfuClient

__all__ = ["Direction", "Transports", "dump_model"]

logger = logging.getLogger(__name__)

Direction = Literal["send", "recv"]


def dump_model(model: Any) -> Any:
    """A pymediasoup pydantic model as the plain camelCase JSON object mediasoup expects."""
    if model is None:
        return None
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def _ice_servers(servers: Any) -> list[RTCIceServer]:
    """RTCIceServer objects from a createWebRtcTransport reply's ``iceServers``."""
    result = []
    for server in servers if isinstance(servers, list) else []:
        if isinstance(server, dict) and server.get("urls"):
            result.append(
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
    return result


def _transport_options(info: Mapping[str, Any]) -> dict[str, Any]:
    """pymediasoup's createSendTransport/createRecvTransport arguments from the server's reply."""
    candidates = []
    for server_candidate in info["iceCandidates"]:
        candidate = dict(server_candidate)
        # pymediasoup reads `ip`; newer mediasoup sends only `address`.
        if "ip" not in candidate and "address" in candidate:
            candidate["ip"] = candidate["address"]
        candidates.append(IceCandidate.model_validate(candidate))
    sctp = info.get("sctpParameters")
    return {
        "id": info["id"],
        "iceParameters": IceParameters.model_validate(info["iceParameters"]),
        "iceCandidates": candidates,
        "dtlsParameters": DtlsParameters.model_validate(info["dtlsParameters"]),
        "sctpParameters": SctpParameters.model_validate(sctp) if sctp else None,
        # The server's STUN/TURN servers, if any; never the public STUN
        # server aiortc uses when given none.
        "iceServers": _ice_servers(info.get("iceServers")),
    }


def _ignore(*args: Any) -> None:
    return None


class Transports:
    """The Device, the send and receive transports, and a lock for each.

    pymediasoup does not queue handler operations (mediasoup-client does):
    each aiortc RTCPeerConnection renegotiates one operation at a time, so
    every produce, consume, close and ICE restart holds its transport's lock.
    """

    def __init__(self, client: SfuClient) -> None:
        self._client = client
        self.router_rtp_capabilities: dict[str, Any] | None = None
        self.device: Any = None  # pymediasoup Device
        self.send: Any = None  # pymediasoup Transport
        self.recv: Any = None
        self.send_lock = asyncio.Lock()
        self.recv_lock = asyncio.Lock()

    def install(self, protoo: ProtooConnection) -> None:
        protoo.on_notification("transportClosed", self._on_transport_closed)

    def _on_transport_closed(self, data: dict[str, Any]) -> None:
        transport_id = data.get("transportId")
        if isinstance(transport_id, str):
            self._client._fire("transportclosed", transport_id, str(data.get("reason", "")))

    def _with_locks(self) -> list[tuple[Any, asyncio.Lock]]:
        return [(self.send, self.send_lock), (self.recv, self.recv_lock)]

    def open_ids(self) -> list[str]:
        """The ids of the transports this client holds."""
        return [transport.id for transport, _ in self._with_locks() if transport is not None]

    # --- creating --------------------------------------------------------------

    async def load_device(self) -> None:
        """``getRouterRtpCapabilities``, then a fresh Device loaded with them."""
        caps = await self._client.request("getRouterRtpCapabilities")
        self.router_rtp_capabilities = caps
        self.device = Device(handlerFactory=AiortcHandler.createFactory(tracks=[]))
        await self.device.load(routerRtpCapabilities=RtpCapabilities.model_validate(caps))

    async def open(self, direction: Direction) -> None:
        """``createWebRtcTransport`` and the pymediasoup transport for its reply."""
        info = await self._client.request(
            "createWebRtcTransport",
            {
                "forceTcp": False,
                "producing": direction == "send",
                "consuming": direction == "recv",
                # Data channels (pymediasoup's produceData/consumeData) need SCTP.
                "sctpCapabilities": dump_model(self.device.sctpCapabilities),
            },
        )
        options = _transport_options(info)
        if direction == "send":
            self.send = self.device.createSendTransport(**options)
            self._wire(self.send, direction)
            self.send.on("produce", self._on_produce(self.send.id))
            self.send.on("producedata", self._on_produce_data(self.send.id))
        else:
            self.recv = self.device.createRecvTransport(**options)
            # Peers come and go: never recycle a closed m-section (see aiortc_adapter).
            disable_media_section_recycling(self.recv.handler)
            self._wire(self.recv, direction)

    def _wire(self, transport: Any, direction: Direction) -> None:
        transport_id: str = transport.id

        async def on_connect(dtls_parameters: Any) -> None:
            await self._client.request(
                "connectWebRtcTransport",
                {"transportId": transport_id, "dtlsParameters": dump_model(dtls_parameters)},
            )

        # The handler awaits its "@connect" listeners before it applies the
        # local description (which starts ICE and DTLS); the transport's own
        # "connect" event is fire-and-forget, so the request hangs here and
        # a failure fails the produce()/consume() that triggered it.
        transport.handler.on("@connect", on_connect)
        # pymediasoup refuses to produce/consume without a "connect" listener.
        transport.on("connect", _ignore)

        def on_state(state: str) -> None:
            self._client._fire("connectionstatechange", direction, state)

        transport.on("connectionstatechange", on_state)

    def _on_produce(self, transport_id: str) -> Any:
        """The send transport's "produce" listener: the server's producer id."""

        async def on_produce(kind: str, rtp_parameters: Any, app_data: Any) -> str:
            response = await self._client.request(
                "produce",
                {
                    "transportId": transport_id,
                    "kind": kind,
                    "rtpParameters": dump_model(rtp_parameters),
                    "appData": app_data if app_data is not None else {},
                },
            )
            producer_id = response.get("id")
            if not isinstance(producer_id, str):
                raise ProtooError(500, f"produce response without an id: {response!r}")
            return producer_id

        return on_produce

    def _on_produce_data(self, transport_id: str) -> Any:
        """The send transport's "producedata" listener: the server's data producer id."""

        async def on_produce_data(
            sctpStreamParameters: Any, label: str | None, protocol: str | None, appData: Any
        ) -> str:
            response = await self._client.request(
                "produceData",
                {
                    "transportId": transport_id,
                    "sctpStreamParameters": dump_model(sctpStreamParameters),
                    "label": label or "",
                    "protocol": protocol or "",
                    "appData": appData if appData is not None else {},
                },
            )
            data_producer_id = response.get("id")
            if not isinstance(data_producer_id, str):
                raise ProtooError(500, f"produceData response without an id: {response!r}")
            return data_producer_id

        return on_produce_data

    # --- ICE restart -------------------------------------------------------------

    async def restart_ice(self) -> dict[str, dict[str, Any]]:
        """``restartIce`` for each transport; see :meth:`SfuClient.restart_ice`."""
        result: dict[str, dict[str, Any]] = {}
        for transport, lock in self._with_locks():
            if transport is None or transport.closed:
                continue
            ice_parameters = await self._client.request("restartIce", {"transportId": transport.id})
            async with lock:
                await transport.restartIce(
                    iceParameters=IceParameters.model_validate(ice_parameters)
                )
            result[transport.id] = ice_parameters
        return result

    # --- closing ---------------------------------------------------------------

    async def drop(self) -> None:
        """Close both transports, each once its running operation is done, and forget them."""
        for transport, lock in self._with_locks():
            if transport is None:
                continue
            if transport is self.send:
                self.send = None
            else:
                self.recv = None
            async with lock:
                await _close(transport)

    async def close(self) -> None:
        """Close both transports now (the client is closing); they stay readable, closed."""
        for transport, _ in self._with_locks():
            if transport is not None:
                await _close(transport)


async def _close(transport: Any) -> None:
    """Close a transport (and with it its producers, consumers and their tracks)."""
    try:
        await transport.close()
    except Exception:
        logger.exception("closing transport %s failed", transport.id)
