"""Router: one per room and worker. Owns its transports, producers and observers."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from ..channel.messages import (
    CreateActiveSpeakerObserverRequest,
    Created,
    CreatePipeTransportRequest,
    CreateWebRtcTransportRequest,
    Method,
)
from ..errors import InvalidStateError, UnsupportedError
from .active_speaker_observer import ActiveSpeakerObserver
from .direct_transport import DirectTransport
from .entity import MediaEntity
from .pipe_transport import PipeTransport
from .transport import Transport
from .webrtc_transport import SctpSettings, WebRtcTransport

if TYPE_CHECKING:
    from .data_producer import DataProducer
    from .producer import Producer
    from .worker import Worker

logger = logging.getLogger(__name__)


class Router(MediaEntity):
    """Events: ``workerclose``, ``@close``."""

    def __init__(self, *, worker: Worker, app_data: dict[str, Any]) -> None:
        super().__init__()
        self.id = str(uuid.uuid4())
        self.worker = worker
        self.app_data = app_data
        self.closed = False
        self.transports: dict[str, Transport] = {}
        self.producers: dict[str, Producer] = {}
        self.data_producers: dict[str, DataProducer] = {}
        self.rtp_observers: dict[str, ActiveSpeakerObserver] = {}

    async def create_webrtc_transport(
        self,
        *,
        force_tcp: bool = False,
        enable_sctp: bool = False,
        app_data: dict[str, Any] | None = None,
    ) -> WebRtcTransport:
        self._check_open()
        settings = self.worker.settings
        if force_tcp and not settings.enable_tcp:
            raise UnsupportedError("ICE over TCP is not enabled on this server (media.enable_tcp)")
        transport = WebRtcTransport(
            router=self,
            announced_ip=settings.announced_address,
            certificate=self.worker.certificate,
            ice_timeout=settings.ice_timeout,
            webrtc_server=self.worker.webrtc_server,
            enable_tcp=settings.enable_tcp,
            force_tcp=force_tcp,
            sctp=(
                SctpSettings(settings.num_sctp_streams, settings.max_sctp_message_size)
                if enable_sctp and settings.enable_sctp
                else None
            ),
            app_data=app_data or {},
        )
        await transport.start(settings.listen_ip, settings.rtc_min_port, settings.rtc_max_port)
        self._adopt(transport)
        return transport

    async def create_pipe_transport(
        self, *, app_data: dict[str, Any] | None = None
    ) -> PipeTransport:
        """A plain-RTP transport toward a router of another worker on this host."""
        self._check_open()
        transport = PipeTransport(router=self, app_data=app_data or {})
        await transport.start("127.0.0.1")
        self._adopt(transport)
        return transport

    def _adopt(self, transport: Transport) -> None:
        self.transports[transport.id] = transport
        transport.on("@close", lambda: self._transport_closed(transport))
        self.register(transport)

    def _transport_closed(self, transport: Transport) -> None:
        self.transports.pop(transport.id, None)
        self.worker.closed_totals.update(transport.final_counters)

    async def create_direct_transport(
        self, *, app_data: dict[str, Any] | None = None
    ) -> DirectTransport:
        """A transport with no network, for the server's own data (see direct_transport.py)."""
        self._check_open()
        transport = DirectTransport(router=self, app_data=app_data or {})
        self._adopt(transport)
        return transport

    async def create_active_speaker_observer(
        self, *, interval: float = 0.3, app_data: dict[str, Any] | None = None
    ) -> ActiveSpeakerObserver:
        self._check_open()
        observer = ActiveSpeakerObserver(router=self, interval=interval, app_data=app_data)
        observer.start()
        self.rtp_observers[observer.id] = observer
        observer.on("@close", lambda: self.rtp_observers.pop(observer.id, None))
        self.register(observer)
        return observer

    async def handle_request(self, method: Method, data: Any) -> Any:
        match method:
            case Method.ROUTER_CREATE_WEBRTC_TRANSPORT:
                webrtc: CreateWebRtcTransportRequest = data
                transport = await self.create_webrtc_transport(
                    force_tcp=webrtc["forceTcp"],
                    enable_sctp=webrtc.get("enableSctp", False),
                    app_data=webrtc["appData"],
                )
                return transport.info()
            case Method.ROUTER_CREATE_PIPE_TRANSPORT:
                pipe: CreatePipeTransportRequest = data
                return (await self.create_pipe_transport(app_data=pipe["appData"])).info()
            case Method.ROUTER_CREATE_DIRECT_TRANSPORT:
                direct: CreatePipeTransportRequest = data
                return (await self.create_direct_transport(app_data=direct["appData"])).info()
            case Method.ROUTER_CREATE_ACTIVE_SPEAKER_OBSERVER:
                speaker: CreateActiveSpeakerObserverRequest = data
                observer = await self.create_active_speaker_observer(interval=speaker["interval"])
                return Created(id=observer.id)
            case Method.ROUTER_CLOSE:
                self.close()
                return None
        return await super().handle_request(method, data)

    def add_producer(self, producer: Producer) -> None:
        self.producers[producer.id] = producer

    def remove_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        for observer in self.rtp_observers.values():
            observer.forget_producer(producer)

    def add_data_producer(self, data_producer: DataProducer) -> None:
        self.data_producers[data_producer.id] = data_producer

    def remove_data_producer(self, data_producer: DataProducer) -> None:
        self.data_producers.pop(data_producer.id, None)

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"router {self.id} is closed")

    def close(self) -> None:
        """Close every transport (and so every producer and consumer) and observer."""
        if self.closed:
            return
        self.closed = True
        for transport in list(self.transports.values()):
            transport.router_closed()
        for observer in list(self.rtp_observers.values()):
            observer.close()
        self.transports.clear()
        self.producers.clear()
        self.data_producers.clear()
        self.emit_close()

    def worker_closed(self) -> None:
        if not self.closed:
            self.close()
            self.emit("workerclose")
