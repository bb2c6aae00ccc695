"""Placement: which of a room's routers hosts each peer, and piping producers
between them.

A room starts on one router (the first, which hosts the active speaker
observer). When it outgrows ``max_peers_per_router`` it adds a router on a
worker it does not use yet (one per worker); a producer on one router reaches
consumers and the observer on another through ``pipe_to_router``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..control.active_speaker_observer import ActiveSpeakerObserver
from ..control.producer import Producer
from ..control.router import Router
from ..control.worker_pool import NoWorkerError, WorkerPool
from ..errors import InvalidStateError, SfuError
from .peer import Peer

logger = logging.getLogger(__name__)


class Placement:
    def __init__(
        self,
        router: Router,
        *,
        room_id: str,
        pool: WorkerPool,
        media_codecs: list[dict[str, Any]],
        max_peers_per_router: int,
        members: Callable[[], Iterable[Peer]],
        on_worker_lost: Callable[[Router], None],
    ) -> None:
        """``router`` is the room's first; ``members`` gives the room's peers."""
        self._room_id = room_id
        self._pool = pool
        self._media_codecs = media_codecs
        # Peers per router before the room spreads to another worker (0: never).
        self._max_peers_per_router = max_peers_per_router
        self._members = members
        self._on_worker_lost = on_worker_lost
        self.closed = False
        # The first router; it hosts the active speaker observer.
        self.router = router
        self.routers: dict[str, Router] = {}
        self._lock = asyncio.Lock()
        self._watch(router)

    def _watch(self, router: Router) -> None:
        self.routers[router.id] = router
        router.observer.on("close", lambda: self.routers.pop(router.id, None))
        router.on("workerclose", lambda: self._on_worker_lost(router))

    def peers_on(self, router: Router) -> list[Peer]:
        """The peers whose transports ``router`` hosts (all of them on the first
        router: the room lives there)."""
        return [p for p in self._members() if router is self.router or p.router is router]

    def _load(self, router: Router, excluding: Peer) -> int:
        return sum(
            1 for p in self._members() if p.router is router and not p.closed and p is not excluding
        )

    async def router_for(self, peer: Peer) -> Router:
        """The router for ``peer``'s transports: the first with room for it, or a
        new one on a worker the room does not use yet (when it may spread)."""
        if peer.router is not None and not peer.router.closed:
            return peer.router
        limit = self._max_peers_per_router
        async with self._lock:
            routers = [r for r in self.routers.values() if not r.closed]
            if self.router.closed or not routers:
                raise InvalidStateError("the room is closing")
            router = next((r for r in routers if not limit or self._load(r, peer) < limit), None)
            if router is None:
                router = await self._spread(routers, peer)
            peer.router = router
            return router

    async def _spread(self, routers: list[Router], peer: Peer) -> Router:
        """A router on a worker the room does not use yet; the emptiest of
        ``routers`` when every worker is in use."""
        try:
            worker = self._pool.least_loaded(exclude=[r.worker for r in routers])
        except NoWorkerError:
            return min(routers, key=lambda r: self._load(r, peer))
        router = await worker.create_router(
            media_codecs=self._media_codecs, app_data={"roomId": self._room_id}
        )
        if self.closed:
            router.close()
            raise InvalidStateError("the room closed")
        self._watch(router)
        logger.info(
            "room %s: spreads to worker %d (router %s)", self._room_id, worker.index, router.id
        )
        return router

    async def pipe(self, producer: Producer, router: Router) -> None:
        """Make ``producer`` consumable on ``router`` (a no-op on its own router)."""
        source = producer.transport.router
        if router is not source:
            await source.pipe_to_router(producer.id, router)

    async def observe(self, producer: Producer, observer: ActiveSpeakerObserver) -> None:
        """Let the active speaker observer (on the first router) hear an audio producer."""
        router = producer.transport.router
        try:
            if router is not self.router:
                producer = await router.pipe_to_router(producer.id, self.router)
            await observer.add_producer(producer)
        except SfuError as error:
            logger.warning(
                "room %s: cannot observe producer %s: %s", self._room_id, producer.id, error
            )

    def close(self) -> None:
        self.closed = True
        for router in list(self.routers.values()):
            router.close()
        self.router.close()
