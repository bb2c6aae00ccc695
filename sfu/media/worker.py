"""Worker: the media plane of one process. Owns routers, the DTLS certificate and the port range.

mediasoup puts a worker in a C++ subprocess; ours is this process
(``sfu.media.worker_process``). It answers the channel's ``worker.*``
requests and hands every other request to the entity it targets.
"""

from __future__ import annotations

import asyncio
import os
import resource
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from pyee.asyncio import AsyncIOEventEmitter

from ..aiortc_adapter import RTCCertificate, generate_certificate
from ..channel.messages import Created, CreateRouterRequest, Method, WorkerStarted, WorkerStats
from ..config import MediaConfig
from ..errors import InvalidStateError, NotFoundError
from .entity import EntityRegistry
from .fastpath import NATIVE_SEND
from .router import Router
from .webrtc_server import WebRtcServer

if TYPE_CHECKING:
    from ..channel import Channel


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


class Worker(AsyncIOEventEmitter):
    """Events: ``@close``."""

    def __init__(self, settings: MediaConfig, channel: Channel | None = None) -> None:
        super().__init__()
        # Its routers and their transports, producers, consumers and observers, by id.
        self.registry = EntityRegistry(channel)
        self.id = str(uuid.uuid4())
        self.pid = os.getpid()
        self.settings = settings
        self.closed = False
        # One certificate per worker, as mediasoup does: fingerprints are per worker.
        self.certificate: RTCCertificate = generate_certificate()
        self.routers: dict[str, Router] = {}
        self.webrtc_server: WebRtcServer | None = None
        # Counters of closed transports, so that /metrics totals never go down.
        self.closed_totals: Counter[str] = Counter()

    async def start(self) -> None:
        """Open the shared UDP port in single-port mode."""
        if self.settings.udp_port and self.webrtc_server is None:
            self.webrtc_server = await WebRtcServer.create(
                self.settings.listen_ip, self.settings.udp_port, self.settings.enable_tcp
            )

    async def create_router(self, *, app_data: dict[str, Any] | None = None) -> Router:
        """A router; its RTP capabilities live in the control layer, which resolves
        every producer's and consumer's parameters against them (ORTC)."""
        if self.closed:
            raise InvalidStateError("worker is closed")
        router = Router(worker=self, app_data=app_data or {})
        self.routers[router.id] = router
        router.on("@close", lambda: self.routers.pop(router.id, None))
        self.registry.add(router)
        return router

    async def handle_request(self, method: str, target: str, data: Any) -> Any:
        """The channel's requests: ``worker.*`` here, the others by the entity they target."""
        try:
            known = Method(method)
        except ValueError:
            raise NotFoundError(f"unknown worker method {method!r}") from None
        match known:
            case Method.WORKER_START:
                await self.start()
                return WorkerStarted(id=self.id, pid=self.pid)
            case Method.WORKER_CREATE_ROUTER:
                request: CreateRouterRequest = data
                return Created(id=(await self.create_router(app_data=request["appData"])).id)
            case Method.WORKER_GET_STATS:
                return self.stats()
        return await self.registry.handle_request(known, target, data)

    def stats(self) -> WorkerStats:
        server = self.webrtc_server
        return WorkerStats(
            counts=self.counts(),
            totals=dict(self.media_totals()),
            serverDrops=dict(server.drops) if server is not None else {},
            process=process_usage(),
            nativeSend=NATIVE_SEND,
        )

    def media_totals(self) -> Counter[str]:
        """Packets, bytes, NACKs, keyframe requests and drops since start."""
        totals = Counter(self.closed_totals)
        for router in self.routers.values():
            for transport in router.transports.values():
                totals.update(transport.counters())
        if self.webrtc_server is not None:
            for reason, count in self.webrtc_server.drops.items():
                totals[f"dropped:{reason}"] += count
        return totals

    def counts(self) -> dict[str, int]:
        transports = [t for r in self.routers.values() for t in r.transports.values()]
        return {
            "routers": len(self.routers),
            "transports": len(transports),
            "producers": sum(len(t.producers) for t in transports),
            "audioProducers": sum(
                p.kind == "audio" for t in transports for p in t.producers.values()
            ),
            "videoProducers": sum(
                p.kind == "video" for t in transports for p in t.producers.values()
            ),
            "consumers": sum(len(t.consumers) for t in transports),
            "dataProducers": sum(len(t.data_producers) for t in transports),
            "dataConsumers": sum(len(t.data_consumers) for t in transports),
        }

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for router in list(self.routers.values()):
            router.worker_closed()
        if self.webrtc_server is not None:
            self.webrtc_server.close()
        self.emit("@close")
