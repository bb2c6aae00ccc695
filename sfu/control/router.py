"""Router: the signaling side's handle on a router in a worker (mediasoup's Router.ts).

``pipe_to_router`` makes a producer of this router consumable in a router of
another worker, through a pair of PipeTransports over loopback UDP: a pipe
consumer here, a pipe producer with the same id there.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from ..channel.messages import (
    CreateActiveSpeakerObserverRequest,
    CreatePipeTransportRequest,
    CreateWebRtcTransportRequest,
    Method,
)
from ..errors import InvalidStateError, NotFoundError
from ..models import RtpCapabilities
from . import ortc
from .active_speaker_observer import ActiveSpeakerObserver
from .channel_object import ChannelObject
from .data_producer import DataProducer
from .direct_transport import DirectTransport
from .pipe_transport import PipeTransport
from .producer import Producer
from .transport import Transport
from .webrtc_transport import WebRtcTransport

if TYPE_CHECKING:
    from .worker import Worker


class Router(ChannelObject):
    """Events: ``workerclose``, ``@close``. ``observer``: ``newtransport(transport)``,
    ``newrtpobserver(observer)``, ``close``."""

    kind_name = "router"
    close_method = Method.ROUTER_CLOSE

    def __init__(
        self,
        worker: Worker,
        router_id: str,
        rtp_capabilities: RtpCapabilities,
        app_data: dict[str, Any],
    ) -> None:
        super().__init__(worker.channel, router_id)
        self.worker = worker
        self.rtp_capabilities = rtp_capabilities
        self.app_data = app_data
        self.transports: dict[str, Transport] = {}
        self.producers: dict[str, Producer] = {}
        self.data_producers: dict[str, DataProducer] = {}
        self.observers: dict[str, ActiveSpeakerObserver] = {}
        self._direct_transport: asyncio.Task[DirectTransport] | None = None
        self._data_pipes: dict[tuple[str, str], asyncio.Task[DataProducer]] = {}
        # Per destination router: the pair of pipe transports, and pipes in progress.
        self._pipe_pairs: dict[str, asyncio.Task[tuple[PipeTransport, PipeTransport]]] = {}
        self._pipes: dict[tuple[str, str], asyncio.Task[Producer]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def _adopt(self, transport: Transport) -> None:
        if self.closed:
            transport.router_closed()
            raise InvalidStateError(f"router {self.id} closed")
        self.transports[transport.id] = transport
        transport.on("@close", lambda: self.transports.pop(transport.id, None))
        self.observer.emit("newtransport", transport)

    async def create_webrtc_transport(
        self,
        *,
        force_tcp: bool = False,
        enable_sctp: bool = False,
        app_data: dict[str, Any] | None = None,
    ) -> WebRtcTransport:
        """``enable_sctp``: data channels (when the server's config allows them)."""
        app_data = app_data or {}
        info = await self._request(
            Method.ROUTER_CREATE_WEBRTC_TRANSPORT,
            CreateWebRtcTransportRequest(
                forceTcp=force_tcp, enableSctp=enable_sctp, appData=app_data
            ),
        )
        transport = WebRtcTransport(self._channel, info, self, app_data)
        self._adopt(transport)
        transport.attach()
        return transport

    async def create_pipe_transport(self, app_data: dict[str, Any] | None = None) -> PipeTransport:
        app_data = app_data or {}
        info = await self._request(
            Method.ROUTER_CREATE_PIPE_TRANSPORT, CreatePipeTransportRequest(appData=app_data)
        )
        transport = PipeTransport(self._channel, info, self, app_data)
        self._adopt(transport)
        transport.attach()
        return transport

    async def create_direct_transport(
        self, app_data: dict[str, Any] | None = None
    ) -> DirectTransport:
        app_data = app_data or {}
        info = await self._request(
            Method.ROUTER_CREATE_DIRECT_TRANSPORT, CreatePipeTransportRequest(appData=app_data)
        )
        transport = DirectTransport(self._channel, info["id"], self, app_data)
        self._adopt(transport)
        transport.attach()
        return transport

    async def direct_transport(self) -> DirectTransport:
        """This router's one direct transport for the server's own data and data pipes (made once)."""
        task = self._direct_transport
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.create_task(self.create_direct_transport({"direct": True}))
            self._direct_transport = task
        transport = await asyncio.shield(task)
        if transport.closed:
            self._direct_transport = None
            return await self.direct_transport()
        return transport

    async def create_active_speaker_observer(
        self, *, interval: float = 0.3
    ) -> ActiveSpeakerObserver:
        info = await self._request(
            Method.ROUTER_CREATE_ACTIVE_SPEAKER_OBSERVER,
            CreateActiveSpeakerObserverRequest(interval=interval),
        )
        observer = ActiveSpeakerObserver(self._channel, info["id"])
        self.observers[observer.id] = observer
        observer.on("@close", lambda: self.observers.pop(observer.id, None))
        self.observer.emit("newrtpobserver", observer)
        observer.attach()
        return observer

    def can_consume(self, producer_id: str, rtp_capabilities: RtpCapabilities) -> bool:
        """Whether a device with ``rtp_capabilities`` (validated, as the room does at
        join) can consume the producer: ORTC on the parameters kept here, with no
        round trip to the worker."""
        producer = self.producers.get(producer_id)
        return producer is not None and ortc.can_consume(
            producer.consumable_rtp_parameters, rtp_capabilities
        )

    def producer_added(self, producer: Producer) -> None:
        self.producers[producer.id] = producer
        producer.on("@close", lambda: self._producer_closed(producer))

    def _producer_closed(self, producer: Producer) -> None:
        if self.producers.get(producer.id) is producer:
            del self.producers[producer.id]

    def data_producer_added(self, data_producer: DataProducer) -> None:
        self.data_producers[data_producer.id] = data_producer
        data_producer.on("@close", lambda: self._data_producer_closed(data_producer))

    def _data_producer_closed(self, data_producer: DataProducer) -> None:
        if self.data_producers.get(data_producer.id) is data_producer:
            del self.data_producers[data_producer.id]

    # ---- pipes ----------------------------------------------------------------------

    async def pipe_to_router(self, producer_id: str, router: Router) -> Producer:
        """The pipe producer in ``router`` for this router's ``producer_id`` (made once)."""
        self._check_open()
        if router is self:
            raise InvalidStateError("cannot pipe a router to itself")
        existing = router.producers.get(producer_id)
        if existing is not None:
            return existing
        if producer_id not in self.producers:
            raise NotFoundError(f"producer {producer_id} not found in router {self.id}")
        key = (producer_id, router.id)
        task = self._pipes.get(key)
        if task is None:
            task = asyncio.create_task(self._pipe(producer_id, router))
            self._pipes[key] = task
            task.add_done_callback(lambda _: self._pipes.pop(key, None))
        return await asyncio.shield(task)

    async def pipe_data_to_router(self, data_producer_id: str, router: Router) -> DataProducer:
        """The data producer in ``router`` (same id) that repeats this router's
        ``data_producer_id`` (made once). Unlike mediasoup (SCTP over the pipe
        transport), the messages cross this process: a direct data consumer
        here, a direct data producer there."""
        self._check_open()
        if router is self:
            raise InvalidStateError("cannot pipe a router to itself")
        existing = router.data_producers.get(data_producer_id)
        if existing is not None:
            return existing
        if data_producer_id not in self.data_producers:
            raise NotFoundError(f"data producer {data_producer_id} not found in router {self.id}")
        key = (data_producer_id, router.id)
        task = self._data_pipes.get(key)
        if task is None:
            task = asyncio.create_task(self._pipe_data(data_producer_id, router))
            self._data_pipes[key] = task
            task.add_done_callback(lambda _: self._data_pipes.pop(key, None))
        return await asyncio.shield(task)

    async def _pipe_data(self, data_producer_id: str, router: Router) -> DataProducer:
        original = self.data_producers[data_producer_id]
        reader = await (await self.direct_transport()).consume_data(
            data_producer_id=data_producer_id, app_data={"pipeTo": router.id}
        )
        try:
            repeater = await (await router.direct_transport()).produce_data(
                label=original.label,
                protocol=original.protocol,
                app_data=original.app_data,
                data_producer_id=data_producer_id,
            )
        except BaseException:
            reader.close()
            raise

        def relay(message: str | bytes) -> None:
            if not repeater.closed:
                self._spawn(repeater.send(message))

        # In order: each send is one channel request, and the channel answers in order.
        reader.on("message", relay)
        reader.on("@close", repeater.close)
        repeater.on("@close", reader.close)
        if reader.closed:
            repeater.close()
        return repeater

    async def _pipe_pair(self, router: Router) -> tuple[PipeTransport, PipeTransport]:
        task = self._pipe_pairs.get(router.id)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.create_task(self._connect_pipe_pair(router))
            self._pipe_pairs[router.id] = task

            async def reversed_pair() -> tuple[PipeTransport, PipeTransport]:
                local, remote = await task
                return remote, local

            # One pair serves both directions (as mediasoup's pipeToRouter).
            mirror = asyncio.create_task(reversed_pair())
            mirror.add_done_callback(lambda t: t.cancelled() or t.exception())
            router._pipe_pairs[self.id] = mirror
        pair = await asyncio.shield(task)
        if pair[0].closed or pair[1].closed:
            self._pipe_pairs.pop(router.id, None)
            return await self._pipe_pair(router)
        return pair

    async def _connect_pipe_pair(self, router: Router) -> tuple[PipeTransport, PipeTransport]:
        local = await self.create_pipe_transport({"pipeTo": router.id})
        try:
            remote = await router.create_pipe_transport({"pipeTo": self.id})
        except BaseException:
            local.close()
            raise
        # Either end closing (its router or worker gone) takes the other with it,
        # and the pair is forgotten on both sides.
        local.on("@close", remote.close)
        remote.on("@close", local.close)
        local.on("@close", lambda: self._forget_pipe_pair(router))
        try:
            await local.connect(remote.ip, remote.port)
            await remote.connect(local.ip, local.port)
        except BaseException:
            local.close()
            raise
        return local, remote

    def _forget_pipe_pair(self, router: Router) -> None:
        self._pipe_pairs.pop(router.id, None)
        router._pipe_pairs.pop(self.id, None)

    async def _pipe(self, producer_id: str, router: Router) -> Producer:
        local, remote = await self._pipe_pair(router)
        pipe_consumer = await local.consume_pipe(producer_id)
        try:
            pipe_producer = await remote.produce(
                kind=pipe_consumer.kind,
                rtp_parameters=pipe_consumer.rtp_parameters,
                paused=pipe_consumer.producer_paused,
                app_data=self.producers[producer_id].app_data
                if producer_id in self.producers
                else {},
                producer_id=producer_id,
            )
        except BaseException:
            pipe_consumer.close()
            raise
        # The pipe lives as long as both ends; pause and resume follow the original.
        pipe_consumer.on("@close", pipe_producer.close)
        pipe_producer.on("@close", pipe_consumer.close)
        pipe_consumer.on("producerpause", lambda: self._spawn(pipe_producer.pause()))
        pipe_consumer.on("producerresume", lambda: self._spawn(pipe_producer.resume()))
        # What happened to the original while the other worker answered.
        if pipe_consumer.closed:
            pipe_producer.close()
            raise NotFoundError(f"producer {producer_id} closed")
        if pipe_consumer.producer_paused != pipe_producer.paused:
            self._spawn(
                pipe_producer.pause() if pipe_consumer.producer_paused else pipe_producer.resume()
            )
        return pipe_producer

    def _spawn(self, coroutine: Any) -> None:
        async def quietly() -> None:
            with contextlib.suppress(Exception):
                await coroutine

        task = asyncio.create_task(quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- closing --------------------------------------------------------------------

    def _close_children(self) -> None:
        for transport in list(self.transports.values()):
            transport.router_closed()
        for observer in list(self.observers.values()):
            observer.router_closed()
        for task in [*self._pipes.values(), *self._pipe_pairs.values(), *self._data_pipes.values()]:
            task.cancel()
        self.transports.clear()
        self.producers.clear()
        self.data_producers.clear()

    def worker_closed(self) -> None:
        """Its worker closed or died (which took the router with it)."""
        self._closed("workerclose")
