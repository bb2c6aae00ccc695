"""Worker: the media plane of one process. Owns routers, the DTLS certificate and the port range.

mediasoup puts a worker in a C++ subprocess; ours is this process. The API is
async and message-shaped so that routers can move into worker processes
behind a channel (the multi-process issue) without changing callers.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from ..aiortc_adapter import RTCCertificate, generate_certificate
from ..config import MediaConfig
from ..errors import InvalidStateError
from .router import Router
from .webrtc_server import WebRtcServer


class Worker(AsyncIOEventEmitter):
    """Events: ``@close``."""

    def __init__(self, settings: MediaConfig) -> None:
        super().__init__()
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
        return router

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
