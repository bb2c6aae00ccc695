"""The worker end of the channel: requests become calls on the media objects,
and their events become notifications.

It keeps every object the signaling process may name in a dict by id, and
forgets it when it closes.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Awaitable, Callable
from typing import Any

from ..channel import Channel
from ..errors import InvalidRequestError, NotFoundError
from ..signaling.validation import get_bool, get_int, get_object, get_str
from .active_speaker_observer import ActiveSpeakerObserver
from .consumer import Consumer
from .pipe_transport import PipeTransport
from .producer import Producer
from .router import Router
from .transport import Transport
from .webrtc_transport import WebRtcTransport
from .worker import Worker

Method = Callable[[str, dict[str, Any]], Awaitable[Any]]


def process_usage() -> dict[str, Any]:
    """CPU seconds, RSS, open fds and asyncio tasks of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result: dict[str, Any] = {
        "pid": os.getpid(),
        "cpuSeconds": usage.ru_utime + usage.ru_stime,
        "tasks": len(asyncio.all_tasks()),
    }
    try:
        result["fds"] = len(os.listdir("/proc/self/fd"))
        with open("/proc/self/statm") as statm:
            result["rssBytes"] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        pass
    return result


def transport_info(transport: WebRtcTransport) -> dict[str, Any]:
    return {
        "id": transport.id,
        "iceParameters": transport.ice_parameters,
        "iceCandidates": transport.ice_candidates,
        "dtlsParameters": transport.dtls_parameters,
        "sctpParameters": transport.sctp_parameters,
        "iceState": transport.ice_state,
        "dtlsState": transport.dtls_state,
    }


class WorkerRequestHandler:
    def __init__(self, worker: Worker, channel: Channel) -> None:
        self.worker = worker
        self.channel = channel
        self.routers: dict[str, Router] = {}
        self.transports: dict[str, Transport] = {}
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.observers: dict[str, ActiveSpeakerObserver] = {}
        self._methods: dict[str, Method] = {
            "worker.start": self._start,
            "worker.createRouter": self._create_router,
            "worker.getStats": self._worker_stats,
            "router.close": self._router_close,
            "router.createWebRtcTransport": self._create_webrtc_transport,
            "router.createPipeTransport": self._create_pipe_transport,
            "router.createActiveSpeakerObserver": self._create_observer,
            "transport.connect": self._transport_connect,
            "transport.restartIce": self._transport_restart_ice,
            "transport.produce": self._transport_produce,
            "transport.consume": self._transport_consume,
            "transport.getStats": self._transport_stats,
            "transport.close": self._transport_close,
            "producer.pause": self._producer_pause,
            "producer.resume": self._producer_resume,
            "producer.getStats": self._producer_stats,
            "producer.close": self._producer_close,
            "consumer.pause": self._consumer_pause,
            "consumer.resume": self._consumer_resume,
            "consumer.setPriority": self._consumer_set_priority,
            "consumer.setPreferredLayers": self._consumer_set_preferred_layers,
            "consumer.requestKeyFrame": self._consumer_request_key_frame,
            "consumer.getStats": self._consumer_stats,
            "consumer.close": self._consumer_close,
            "observer.addProducer": self._observer_add_producer,
            "observer.close": self._observer_close,
        }

    async def __call__(self, method: str, target: str, data: dict[str, Any]) -> Any:
        handler = self._methods.get(method)
        if handler is None:
            raise NotFoundError(f"unknown worker method {method!r}")
        return await handler(target, data)

    # ---- lookups ------------------------------------------------------------

    @staticmethod
    def _find(table: dict[str, Any], kind: str, object_id: str) -> Any:
        found = table.get(object_id)
        if found is None:
            raise NotFoundError(f"{kind} {object_id} not found")
        return found

    def _router(self, object_id: str) -> Router:
        router: Router = self._find(self.routers, "router", object_id)
        return router

    def _transport(self, object_id: str) -> Transport:
        transport: Transport = self._find(self.transports, "transport", object_id)
        return transport

    def _producer(self, object_id: str) -> Producer:
        producer: Producer = self._find(self.producers, "producer", object_id)
        return producer

    def _consumer(self, object_id: str) -> Consumer:
        consumer: Consumer = self._find(self.consumers, "consumer", object_id)
        return consumer

    def _notify(self, target: str, event: str, data: Any = None) -> None:
        self.channel.notify(target, event, data)

    # ---- worker ---------------------------------------------------------------

    async def _start(self, target: str, data: dict[str, Any]) -> Any:
        """Open the shared UDP port in single-port mode; the first request of a worker."""
        await self.worker.start()
        return {"id": self.worker.id, "pid": os.getpid()}

    async def _create_router(self, target: str, data: dict[str, Any]) -> Any:
        router = await self.worker.create_router(
            app_data=get_object(data, "appData", optional=True) or {},
        )
        self.routers[router.id] = router
        router.on("@close", lambda: self.routers.pop(router.id, None))
        return {"id": router.id}

    async def _worker_stats(self, target: str, data: dict[str, Any]) -> Any:
        drops = (
            dict(self.worker.webrtc_server.drops) if self.worker.webrtc_server is not None else {}
        )
        return {
            "counts": self.worker.counts(),
            "totals": dict(self.worker.media_totals()),
            "serverDrops": drops,
            "process": process_usage(),
        }

    # ---- router ---------------------------------------------------------------

    async def _router_close(self, target: str, data: dict[str, Any]) -> Any:
        router = self.routers.get(target)
        if router is not None:
            router.close()
        return None

    def _adopt_transport(self, transport: Transport) -> None:
        self.transports[transport.id] = transport
        transport.on("@close", lambda: self.transports.pop(transport.id, None))
        transport.on(
            "serverclose", lambda reason: self._notify(transport.id, "serverclose", reason)
        )

    async def _create_webrtc_transport(self, target: str, data: dict[str, Any]) -> Any:
        transport = await self._router(target).create_webrtc_transport(
            force_tcp=get_bool(data, "forceTcp", default=False),
            app_data=get_object(data, "appData", optional=True) or {},
        )
        self._adopt_transport(transport)
        for event in ("icestatechange", "dtlsstatechange"):
            transport.on(event, lambda state, event=event: self._notify(transport.id, event, state))
        return transport_info(transport)

    async def _create_pipe_transport(self, target: str, data: dict[str, Any]) -> Any:
        transport = await self._router(target).create_pipe_transport(
            app_data=get_object(data, "appData", optional=True) or {}
        )
        self._adopt_transport(transport)
        ip, port = transport.local_address
        return {"id": transport.id, "ip": ip, "port": port}

    async def _create_observer(self, target: str, data: dict[str, Any]) -> Any:
        interval = float(data.get("interval", 0.3))
        observer = await self._router(target).create_active_speaker_observer(interval=interval)
        self.observers[observer.id] = observer
        observer.on("@close", lambda: self.observers.pop(observer.id, None))
        observer.on(
            "dominantspeaker",
            lambda producer, volume: self._notify(
                observer.id, "dominantspeaker", {"producerId": producer.id, "volume": volume}
            ),
        )
        observer.on("silence", lambda: self._notify(observer.id, "silence"))
        return {"id": observer.id}

    # ---- transport --------------------------------------------------------------

    async def _transport_connect(self, target: str, data: dict[str, Any]) -> Any:
        transport = self._transport(target)
        if isinstance(transport, PipeTransport):
            await transport.connect(
                get_str(data, "ip"), get_int(data, "port", minimum=1, maximum=65535)
            )
        elif isinstance(transport, WebRtcTransport):
            await transport.connect(get_object(data, "dtlsParameters"))
        return None

    async def _transport_restart_ice(self, target: str, data: dict[str, Any]) -> Any:
        transport = self._transport(target)
        if not isinstance(transport, WebRtcTransport):
            raise InvalidRequestError("only a WebRtcTransport restarts ICE")
        return await transport.restart_ice()

    async def _transport_produce(self, target: str, data: dict[str, Any]) -> Any:
        producer_id = data.get("id")
        producer = await self._transport(target).produce(
            kind=get_str(data, "kind"),
            rtp_parameters=get_object(data, "rtpParameters"),
            rtp_mapping=get_object(data, "rtpMapping"),
            paused=get_bool(data, "paused", default=False),
            app_data=get_object(data, "appData", optional=True) or {},
            producer_id=producer_id if isinstance(producer_id, str) else None,
        )
        self.producers[producer.id] = producer
        producer.on("@close", lambda: self._forget(self.producers, producer))
        producer.on("serverclose", lambda reason: self._notify(producer.id, "serverclose", reason))
        return {"id": producer.id, "kind": producer.kind, "type": producer.type}

    async def _transport_consume(self, target: str, data: dict[str, Any]) -> Any:
        transport = self._transport(target)
        producer_id = get_str(data, "producerId")
        consumer = await transport.consume(
            producer_id=producer_id,
            rtp_parameters=get_object(data, "rtpParameters"),
            paused=get_bool(data, "paused", default=True),
            app_data=get_object(data, "appData", optional=True) or {},
        )
        self.consumers[consumer.id] = consumer
        consumer_id = consumer.id
        consumer.on("@close", lambda: self._forget(self.consumers, consumer))
        for event in ("producerclose", "producerpause", "producerresume"):
            consumer.on(event, lambda event=event: self._notify(consumer_id, event))
        consumer.on("serverclose", lambda reason: self._notify(consumer_id, "serverclose", reason))
        return {"id": consumer.id, "producerPaused": consumer.producer_paused}

    @staticmethod
    def _forget(table: dict[str, Any], item: Producer | Consumer) -> None:
        if table.get(item.id) is item:
            del table[item.id]

    async def _transport_stats(self, target: str, data: dict[str, Any]) -> Any:
        return self._transport(target).get_stats()  # type: ignore[attr-defined]

    async def _transport_close(self, target: str, data: dict[str, Any]) -> Any:
        transport = self.transports.get(target)
        if transport is not None:
            transport.close()
        return None

    # ---- producer and consumer ---------------------------------------------------

    async def _producer_pause(self, target: str, data: dict[str, Any]) -> Any:
        await self._producer(target).pause()

    async def _producer_resume(self, target: str, data: dict[str, Any]) -> Any:
        await self._producer(target).resume()

    async def _producer_stats(self, target: str, data: dict[str, Any]) -> Any:
        return self._producer(target).get_stats()

    async def _producer_close(self, target: str, data: dict[str, Any]) -> Any:
        producer = self.producers.get(target)
        if producer is not None:
            producer.close()

    async def _consumer_pause(self, target: str, data: dict[str, Any]) -> Any:
        await self._consumer(target).pause()

    async def _consumer_resume(self, target: str, data: dict[str, Any]) -> Any:
        await self._consumer(target).resume()

    async def _consumer_set_priority(self, target: str, data: dict[str, Any]) -> Any:
        await self._consumer(target).set_priority(get_int(data, "priority", minimum=1, maximum=255))

    async def _consumer_set_preferred_layers(self, target: str, data: dict[str, Any]) -> Any:
        # Simple consumers have a single layer: nothing to switch.
        self._consumer(target)._check_open()

    async def _consumer_request_key_frame(self, target: str, data: dict[str, Any]) -> Any:
        await self._consumer(target).request_key_frame()

    async def _consumer_stats(self, target: str, data: dict[str, Any]) -> Any:
        return self._consumer(target).get_stats()

    async def _consumer_close(self, target: str, data: dict[str, Any]) -> Any:
        consumer = self.consumers.get(target)
        if consumer is not None:
            consumer.close()

    # ---- active speaker observer -----------------------------------------------------

    async def _observer_add_producer(self, target: str, data: dict[str, Any]) -> Any:
        observer: ActiveSpeakerObserver = self._find(self.observers, "observer", target)
        await observer.add_producer(self._producer(get_str(data, "producerId")))

    async def _observer_close(self, target: str, data: dict[str, Any]) -> Any:
        observer = self.observers.get(target)
        if observer is not None:
            observer.close()
