"""Room: the peers of one room, their protoo sessions, and the Router it drives.

Forwards every producer to every other joined peer ("auto-consume", in both
directions), and tells peers about each other: newPeer, peerClosed,
consumerClosed, consumerPaused/Resumed, activeSpeaker.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from ..config import IceServerConfig, LimitsConfig
from ..control import ortc
from ..control.active_speaker_observer import ActiveSpeakerObserver
from ..control.consumer import Consumer
from ..control.producer import Producer
from ..control.router import Router
from ..control.webrtc_transport import WebRtcTransport
from ..control.worker_pool import NoWorkerError, WorkerPool
from ..errors import (
    ForbiddenError,
    InvalidStateError,
    LimitError,
    NotFoundError,
    SfuError,
    UnsupportedError,
)
from ..logs import peer_id_var, room_id_var
from ..signaling.ice_servers import ice_servers_for
from ..signaling.protoo import ProtooConnection, ProtooRequestError, notification_text
from ..signaling.validation import get_bool, get_int, get_object, get_str
from .peer import Peer

logger = logging.getLogger(__name__)

Handler = Callable[[Peer, dict[str, Any]], Awaitable[Any]]

# WebSocket close codes that tell a client not to reconnect (docs/protocol.md).
CLOSE_REPLACED = 4000
CLOSE_SHUTDOWN = 4001
# Transient: the client may join again.
CLOSE_MEDIA_LOST = 4002
CLOSE_LIMIT = 4029


async def _refuse_requests(method: str, data: dict[str, Any]) -> Any:
    raise InvalidStateError("this connection is closing")


async def _ignore_notification(method: str, data: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class RoomSettings:
    consumer_request_timeout: float = 10.0
    peer_grace_period: float = 10.0
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    ice_servers: tuple[IceServerConfig, ...] = ()
    # Peers per router before the room spreads to another worker (0: never).
    max_peers_per_router: int = 50


class _Session:
    """One WebSocket's view: which Peer it serves (decided by its first request
    when the peerId is already in the room: ``resume`` or replace)."""

    def __init__(self, connection: ProtooConnection, candidate: Peer) -> None:
        self.connection = connection
        self.candidate = candidate
        self.peer: Peer | None = None
        self.answered = False  # whether a request came already (resume must be first)


class Room(AsyncIOEventEmitter):
    """Events: ``close``."""

    def __init__(
        self,
        room_id: str,
        pool: WorkerPool,
        media_codecs: list[dict[str, Any]],
        router: Router,
        observer: ActiveSpeakerObserver,
        settings: RoomSettings | None = None,
    ) -> None:
        super().__init__()
        self.id = room_id
        self._pool = pool
        self._media_codecs = media_codecs
        # The first router; it hosts the active speaker observer. A room that
        # outgrows it adds routers on other workers (one per worker).
        self.router = router
        self.routers: dict[str, Router] = {}
        self._router_lock = asyncio.Lock()
        self._watch_router(router)
        self.observer = observer
        self.settings = settings or RoomSettings()
        self.limits = self.settings.limits
        self.closed = False
        self.peers: dict[str, Peer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Handler] = {
            "getRouterRtpCapabilities": self._get_router_rtp_capabilities,
            "join": self._join,
            "createWebRtcTransport": self._create_webrtc_transport,
            "connectWebRtcTransport": self._connect_webrtc_transport,
            "restartIce": self._restart_ice,
            "produce": self._produce,
            "closeProducer": self._close_producer,
            "pauseProducer": self._pause_producer,
            "resumeProducer": self._resume_producer,
            "pauseConsumer": self._pause_consumer,
            "resumeConsumer": self._resume_consumer,
            "setConsumerPreferredLayers": self._set_consumer_preferred_layers,
            "setConsumerPriority": self._set_consumer_priority,
            "requestConsumerKeyFrame": self._request_consumer_key_frame,
            "changeDisplayName": self._change_display_name,
            "getTransportStats": self._get_transport_stats,
            "getProducerStats": self._get_producer_stats,
            "getConsumerStats": self._get_consumer_stats,
            "produceData": self._unsupported_data_channels,
        }
        observer.on("dominantspeaker", self._on_dominant_speaker)
        observer.on("silence", self._on_silence)

    @classmethod
    async def create(
        cls,
        pool: WorkerPool,
        room_id: str,
        media_codecs: list[dict[str, Any]],
        settings: RoomSettings | None = None,
    ) -> Room:
        """A room on the least-loaded worker."""
        worker = pool.least_loaded()
        router = await worker.create_router(media_codecs=media_codecs, app_data={"roomId": room_id})
        try:
            observer = await router.create_active_speaker_observer(interval=0.3)
        except Exception:
            router.close()
            raise
        return cls(room_id, pool, media_codecs, router, observer, settings)

    # ---- routers (one per worker the room spans) -----------------------------

    def _watch_router(self, router: Router) -> None:
        self.routers[router.id] = router
        router.observer.on("close", lambda: self.routers.pop(router.id, None))
        router.on("workerclose", lambda: self._on_worker_lost(router))

    def _on_worker_lost(self, router: Router) -> None:
        """The worker process under ``router`` died: its peers must join again
        (a new room, or another router of this one, on a live worker)."""
        if self.closed:
            return
        lost = [p for p in self.peers.values() if router is self.router or p.router is router]
        logger.warning(
            "room %s: the media worker of router %s died; %d peers must rejoin",
            self.id,
            router.id,
            len(lost),
        )
        for peer in lost:
            self._close_peer(peer, CLOSE_MEDIA_LOST, "the media worker restarted: join again")
        if router is self.router:
            self.close()

    def _peers_on(self, router: Router, excluding: Peer | None = None) -> int:
        return sum(
            1
            for p in self.peers.values()
            if p.router is router and not p.closed and p is not excluding
        )

    async def _router_for(self, peer: Peer) -> Router:
        """The router for ``peer``'s transports: the first with room for it, or a
        new one on a worker the room does not use yet (when it may spread)."""
        if peer.router is not None and not peer.router.closed:
            return peer.router
        limit = self.settings.max_peers_per_router
        async with self._router_lock:
            routers = [r for r in self.routers.values() if not r.closed]
            if self.router.closed or not routers:
                raise InvalidStateError("the room is closing")
            router = next(
                (r for r in routers if not limit or self._peers_on(r, peer) < limit), None
            )
            if router is None:
                try:
                    worker = self._pool.least_loaded(exclude=[r.worker for r in routers])
                except NoWorkerError:  # every worker is in use: fill the emptiest router
                    router = min(routers, key=lambda r: self._peers_on(r, peer))
                else:
                    router = await worker.create_router(
                        media_codecs=self._media_codecs, app_data={"roomId": self.id}
                    )
                    if self.closed:
                        router.close()
                        raise InvalidStateError("the room closed")
                    self._watch_router(router)
                    logger.info(
                        "room %s: spreads to worker %d (router %s)",
                        self.id,
                        worker.index,
                        router.id,
                    )
            peer.router = router
            return router

    # ---- sessions ----------------------------------------------------------

    async def run_session(self, peer_id: str, connection: ProtooConnection) -> None:
        """Serve one WebSocket until it closes.

        A new peerId becomes a new peer. For a peerId already in the room, the
        first request decides: ``resume`` takes the existing session over,
        anything else replaces it. When the WebSocket of a joined peer drops,
        the peer is kept for the grace period so that it can resume.
        """
        # Every log line of this session (and of tasks it starts) names the room and peer.
        room_id_var.set(self.id)
        peer_id_var.set(peer_id)
        session = _Session(connection, Peer(peer_id, connection))
        if peer_id not in self.peers and len(self.peers) >= 2 * self.limits.max_peers_per_room:
            # Connections that never join count too (each may hold transports and
            # ports), with room for joiners to get the friendlier "room is full" reply.
            connection.close(
                CLOSE_LIMIT, f"room is full: at most {self.limits.max_peers_per_room} peers"
            )
            await connection.run(_refuse_requests, _ignore_notification)
            return
        if peer_id not in self.peers:
            self._adopt(session)
        logger.info("room %s: peer %s connected", self.id, peer_id)

        async def on_request(method: str, data: dict[str, Any]) -> Any:
            first = not session.answered
            session.answered = True
            if method == "resume":
                if not first:
                    raise InvalidStateError("resume must be the first request of a connection")
                return self._resume(session, data)
            if session.peer is None:
                self._replace(session)
            assert session.peer is not None
            return await self._dispatch(session.peer, method, data)

        async def on_notification(method: str, data: dict[str, Any]) -> None:
            # Newer mediasoup-demo clients send pause/resume/close as notifications.
            if session.peer is not None:
                await self._dispatch(session.peer, method, data)

        try:
            await connection.run(on_request, on_notification)
        finally:
            self._connection_lost(session)

    def _adopt(self, session: _Session) -> None:
        session.peer = session.candidate
        self.peers[session.peer.id] = session.peer

    def _replace(self, session: _Session) -> None:
        old = self.peers.get(session.candidate.id)
        # Adopt first: closing the old session must not leave the room empty (and close it).
        self._adopt(session)
        if old is not None:
            logger.info("room %s: peer %s rejoined; replacing its old session", self.id, old.id)
            self._close_peer(
                old, CLOSE_REPLACED, "replaced by a newer session with the same peerId"
            )

    def _resume(self, session: _Session, data: dict[str, Any]) -> Any:
        token = get_str(data, "sessionToken", max_length=256)
        peer = self.peers.get(session.candidate.id)
        if peer is None or peer is session.peer or not peer.joined or peer.closed:
            raise NotFoundError("no session to resume (it expired or never joined): join again")
        if not hmac.compare_digest(peer.session_token, token):
            raise ForbiddenError("wrong sessionToken for this peer")
        if peer.grace_timer is not None:
            peer.grace_timer.cancel()
            peer.grace_timer = None
        old_connection, peer.connection = peer.connection, session.connection
        old_connection.close(CLOSE_REPLACED, "resumed on another connection")
        session.peer = peer
        logger.info("room %s: peer %s resumed its session", self.id, peer.id)
        # Catch up on producers it missed while away (after this reply is queued).
        for other in self._joined_peers(excluding=peer):
            for producer in other.producers.values():
                self._spawn_consumer(peer, other, producer)
        return {
            "peers": [other.public_info() for other in self._joined_peers(excluding=peer)],
            "producers": [
                {"id": p.id, "kind": p.kind, "paused": p.paused} for p in peer.producers.values()
            ],
            "consumers": [
                {
                    "id": c.id,
                    "producerId": c.producer_id,
                    "peerId": c.app_data.get("peerId"),
                    "kind": c.kind,
                    "paused": c.paused,
                    "producerPaused": c.producer_paused,
                }
                for c in peer.consumers.values()
            ],
            "transports": [
                {"id": t.id, "iceState": t.ice_state, "dtlsState": t.dtls_state}
                for t in peer.transports.values()
            ],
        }

    def _connection_lost(self, session: _Session) -> None:
        peer = session.peer
        if peer is None or peer.closed or peer.connection is not session.connection:
            return  # never adopted, already closed, or resumed on another connection
        if (
            peer.joined
            and not self.closed
            and not session.connection.clean_close
            and self.settings.peer_grace_period > 0
        ):
            logger.info(
                "room %s: peer %s lost its WebSocket; keeping it %.0f s for a resume",
                self.id,
                peer.id,
                self.settings.peer_grace_period,
            )
            peer.grace_timer = asyncio.get_running_loop().call_later(
                self.settings.peer_grace_period, self._grace_expired, peer
            )
        else:
            self._close_peer(peer)

    def _grace_expired(self, peer: Peer) -> None:
        peer.grace_timer = None
        if not peer.closed and peer.connection.closed:
            logger.info("room %s: peer %s did not come back; closing it", self.id, peer.id)
            self._close_peer(peer)

    async def _dispatch(self, peer: Peer, method: str, data: dict[str, Any]) -> Any:
        if peer.closed:
            raise InvalidStateError("this session was replaced by a newer one")
        handler = self._handlers.get(method)
        if handler is None:
            raise NotFoundError(f"unknown method {method!r}")
        return await handler(peer, data)

    def _close_peer(self, peer: Peer, code: int = 1000, reason: str = "") -> None:
        if peer.closed:
            return
        peer.closed = True
        if peer.grace_timer is not None:
            peer.grace_timer.cancel()
            peer.grace_timer = None
        if self.peers.get(peer.id) is peer:
            del self.peers[peer.id]
        peer.connection.close(code, reason)
        if peer.joined:
            self._broadcast(self._joined_peers(excluding=peer), "peerClosed", {"peerId": peer.id})
        # Closing the transports closes this peer's producers, and with them the
        # other peers' consumers of them (they get consumerClosed).
        for transport in list(peer.transports.values()):
            transport.close()
        logger.info("room %s: peer %s closed", self.id, peer.id)
        if not self.peers:
            self.close()

    def _joined_peers(self, excluding: Peer | None = None) -> list[Peer]:
        return [p for p in self.peers.values() if p.joined and not p.closed and p is not excluding]

    @staticmethod
    def _broadcast(peers: list[Peer], method: str, data: dict[str, Any]) -> None:
        """The same notification to many peers, serialized once: a room of N members
        that N peers join sends N^2 of them."""
        try:
            text = notification_text(method, data)
        except (ValueError, TypeError, RecursionError):
            logger.error("cannot serialize a %r notification; dropped", method)
            return
        for peer in peers:
            peer.connection.send_text(text)

    def shutdown(self, reason: str) -> None:
        """Tell every peer the server is going away, then close the room."""
        for peer in list(self.peers.values()):
            peer.connection.notify("serverShutdown", {"reason": reason})
            self._close_peer(peer, CLOSE_SHUTDOWN, reason)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for peer in list(self.peers.values()):
            self._close_peer(peer)
        for task in self._tasks:
            task.cancel()
        for router in list(self.routers.values()):
            router.close()
        self.router.close()
        logger.info("room %s: closed", self.id)
        self.emit("close")

    # ---- ownership ---------------------------------------------------------

    def _own(self, peer: Peer, kind: str, object_id: str) -> Any:
        """The named object if ``peer`` owns it; ForbiddenError if another peer does."""
        mine: dict[str, Any] = getattr(peer, kind + "s")
        found = mine.get(object_id)
        if found is not None:
            return found
        if any(object_id in getattr(p, kind + "s") for p in self.peers.values()):
            raise ForbiddenError(f"{kind} {object_id} belongs to another peer")
        raise NotFoundError(f"{kind} {object_id} not found")

    def _transport(self, peer: Peer, data: dict[str, Any]) -> WebRtcTransport:
        transport: WebRtcTransport = self._own(peer, "transport", get_str(data, "transportId"))
        return transport

    def _producer(self, peer: Peer, data: dict[str, Any]) -> Producer:
        producer: Producer = self._own(peer, "producer", get_str(data, "producerId"))
        return producer

    def _consumer(self, peer: Peer, data: dict[str, Any]) -> Consumer:
        consumer: Consumer = self._own(peer, "consumer", get_str(data, "consumerId"))
        return consumer

    # ---- request handlers ----------------------------------------------------

    async def _get_router_rtp_capabilities(self, peer: Peer, data: dict[str, Any]) -> Any:
        return self.router.rtp_capabilities

    async def _join(self, peer: Peer, data: dict[str, Any]) -> Any:
        if peer.joined:
            raise InvalidStateError("already joined")
        display_name = get_str(data, "displayName", max_length=256, default="")
        device = get_object(data, "device", optional=True) or {}
        # Absent for peers that only send (mediasoup-demo's consume=false).
        raw_capabilities = get_object(data, "rtpCapabilities", optional=True)
        rtp_capabilities = (
            ortc.validate_rtp_capabilities(raw_capabilities)
            if raw_capabilities is not None
            else None
        )
        sctp_capabilities = get_object(data, "sctpCapabilities", optional=True)

        if len(self._joined_peers()) >= self.limits.max_peers_per_room:
            raise LimitError(f"room is full: at most {self.limits.max_peers_per_room} peers")
        peer.display_name = display_name
        peer.device = device
        peer.rtp_capabilities = rtp_capabilities
        peer.sctp_capabilities = sctp_capabilities
        peer.joined = True
        others = self._joined_peers(excluding=peer)
        self._broadcast(others, "newPeer", peer.public_info())
        for other in others:
            for producer in other.producers.values():
                self._spawn_consumer(peer, other, producer)
        return {
            "peers": [other.public_info() for other in others],
            "sessionToken": peer.session_token,
        }

    async def _create_webrtc_transport(self, peer: Peer, data: dict[str, Any]) -> Any:
        force_tcp = get_bool(data, "forceTcp", default=False)
        producing = get_bool(data, "producing", default=False)
        consuming = get_bool(data, "consuming", default=False)
        get_object(data, "sctpCapabilities", optional=True)
        if len(peer.transports) >= self.limits.max_transports_per_peer:
            raise LimitError(
                f"a peer may have at most {self.limits.max_transports_per_peer} transports"
            )
        router = await self._router_for(peer)
        transport = await router.create_webrtc_transport(
            force_tcp=force_tcp,
            app_data={"peerId": peer.id, "producing": producing, "consuming": consuming},
        )
        if peer.closed or transport.closed:
            transport.close()
            raise InvalidStateError("peer closed" if peer.closed else "the transport closed")
        peer.transports[transport.id] = transport
        transport.observer.on("close", lambda: peer.transports.pop(transport.id, None))
        transport.on(
            "serverclose", lambda reason: self._on_transport_closed(peer, transport, reason)
        )
        if consuming and peer.joined:
            # A consuming transport created after join: consume what exists.
            for other in self._joined_peers(excluding=peer):
                for producer in other.producers.values():
                    self._spawn_consumer(peer, other, producer)
        return {
            "id": transport.id,
            "iceParameters": transport.ice_parameters,
            "iceCandidates": transport.ice_candidates,
            "dtlsParameters": transport.dtls_parameters,
            "sctpParameters": transport.sctp_parameters,
            # STUN/TURN servers for the client's side (an addition over mediasoup-demo).
            "iceServers": ice_servers_for(self.settings.ice_servers, peer.id),
        }

    def _on_transport_closed(self, peer: Peer, transport: WebRtcTransport, reason: str) -> None:
        peer.connection.notify("transportClosed", {"transportId": transport.id, "reason": reason})
        if reason == "ice-timeout" and peer.joined:
            # Its media path has been dead for ice_timeout seconds: the peer is
            # gone for the others (it may join again).
            self._close_peer(peer, CLOSE_MEDIA_LOST, "media connection lost (ICE timeout)")

    async def _connect_webrtc_transport(self, peer: Peer, data: dict[str, Any]) -> Any:
        transport = self._transport(peer, data)
        await transport.connect(get_object(data, "dtlsParameters"))
        return {}

    async def _restart_ice(self, peer: Peer, data: dict[str, Any]) -> Any:
        transport = self._transport(peer, data)
        return await transport.restart_ice()

    async def _produce(self, peer: Peer, data: dict[str, Any]) -> Any:
        peer.require_joined()
        transport = self._transport(peer, data)
        if len(peer.producers) >= self.limits.max_producers_per_peer:
            raise LimitError(
                f"a peer may have at most {self.limits.max_producers_per_peer} producers"
            )
        kind = get_str(data, "kind")
        rtp_parameters = get_object(data, "rtpParameters")
        app_data = get_object(data, "appData", optional=True) or {}
        paused = get_bool(data, "paused", default=False)
        producer = await transport.produce(
            kind=kind, rtp_parameters=rtp_parameters, paused=paused, app_data=app_data
        )
        if producer.closed:  # its transport closed meanwhile
            raise InvalidStateError("the transport closed")
        peer.producers[producer.id] = producer
        producer.observer.on("close", lambda: peer.producers.pop(producer.id, None))
        producer.on(
            "serverclose",
            lambda reason: peer.connection.notify(
                "producerClosed", {"producerId": producer.id, "reason": reason}
            ),
        )
        if producer.kind == "audio":
            await self._observe(producer)
        for other in self._joined_peers(excluding=peer):
            self._spawn_consumer(other, peer, producer)
        return {"id": producer.id}

    async def _observe(self, producer: Producer) -> None:
        """Let the active speaker observer (on the first router) hear an audio producer."""
        router = producer.transport.router
        try:
            if router is not self.router:
                producer = await router.pipe_to_router(producer.id, self.router)
            await self.observer.add_producer(producer)
        except SfuError as error:
            logger.warning("room %s: cannot observe producer %s: %s", self.id, producer.id, error)

    async def _close_producer(self, peer: Peer, data: dict[str, Any]) -> Any:
        self._producer(peer, data).close()
        return {}

    async def _pause_producer(self, peer: Peer, data: dict[str, Any]) -> Any:
        await self._producer(peer, data).pause()
        return {}

    async def _resume_producer(self, peer: Peer, data: dict[str, Any]) -> Any:
        await self._producer(peer, data).resume()
        return {}

    async def _pause_consumer(self, peer: Peer, data: dict[str, Any]) -> Any:
        await self._consumer(peer, data).pause()
        return {}

    async def _resume_consumer(self, peer: Peer, data: dict[str, Any]) -> Any:
        # Idempotent: mediasoup-client may ask after the server already resumed it.
        await self._consumer(peer, data).resume()
        return {}

    async def _set_consumer_preferred_layers(self, peer: Peer, data: dict[str, Any]) -> Any:
        consumer = self._consumer(peer, data)
        await consumer.set_preferred_layers(
            get_int(data, "spatialLayer", minimum=0, maximum=15),
            get_int(data, "temporalLayer", minimum=0, maximum=15, default=0),
        )
        return {}

    async def _set_consumer_priority(self, peer: Peer, data: dict[str, Any]) -> Any:
        consumer = self._consumer(peer, data)
        await consumer.set_priority(get_int(data, "priority", minimum=1, maximum=255))
        return {}

    async def _request_consumer_key_frame(self, peer: Peer, data: dict[str, Any]) -> Any:
        await self._consumer(peer, data).request_key_frame()
        return {}

    async def _change_display_name(self, peer: Peer, data: dict[str, Any]) -> Any:
        peer.require_joined()
        display_name = get_str(data, "displayName", max_length=256)
        old, peer.display_name = peer.display_name, display_name
        self._broadcast(
            self._joined_peers(excluding=peer),
            "peerDisplayNameChanged",
            {"peerId": peer.id, "displayName": display_name, "oldDisplayName": old},
        )
        return {}

    async def _get_transport_stats(self, peer: Peer, data: dict[str, Any]) -> Any:
        return await self._transport(peer, data).get_stats()

    async def _get_producer_stats(self, peer: Peer, data: dict[str, Any]) -> Any:
        return await self._producer(peer, data).get_stats()

    async def _get_consumer_stats(self, peer: Peer, data: dict[str, Any]) -> Any:
        return await self._consumer(peer, data).get_stats()

    async def _unsupported_data_channels(self, peer: Peer, data: dict[str, Any]) -> Any:
        raise UnsupportedError("data channels are not supported yet")

    # ---- consuming ------------------------------------------------------------

    def _spawn_consumer(self, consumer_peer: Peer, producer_peer: Peer, producer: Producer) -> None:
        if (
            producer.id in consumer_peer.consumed_producer_ids
            or consumer_peer is producer_peer
            or consumer_peer.rtp_capabilities is None
        ):
            return
        if consumer_peer.consuming_transport() is None:
            return  # consumed when the peer creates its consuming transport
        consumer_peer.consumed_producer_ids.add(producer.id)
        task = asyncio.create_task(self._create_consumer(consumer_peer, producer_peer, producer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _create_consumer(
        self, consumer_peer: Peer, producer_peer: Peer, producer: Producer
    ) -> None:
        transport = consumer_peer.consuming_transport()
        capabilities = consumer_peer.rtp_capabilities
        if transport is None or capabilities is None or producer.closed or consumer_peer.closed:
            consumer_peer.consumed_producer_ids.discard(producer.id)
            return
        source = producer.transport.router
        if not source.can_consume(producer.id, capabilities):
            logger.info(
                "room %s: peer %s cannot consume producer %s (no common codec)",
                self.id,
                consumer_peer.id,
                producer.id,
            )
            return
        try:
            if transport.router is not source:
                # The consumer's transport is on another worker: pipe the producer there.
                await source.pipe_to_router(producer.id, transport.router)
            consumer = await transport.consume(
                producer_id=producer.id,
                rtp_capabilities=capabilities,
                paused=True,
                app_data={"peerId": producer_peer.id, "producerId": producer.id},
            )
        except SfuError as error:
            logger.warning("room %s: consume for %s failed: %s", self.id, consumer_peer.id, error)
            consumer_peer.consumed_producer_ids.discard(producer.id)
            return
        if consumer.closed:  # its producer closed while the worker answered
            consumer_peer.consumed_producer_ids.discard(producer.id)
            return

        consumer_peer.consumers[consumer.id] = consumer

        def forget() -> None:
            consumer_peer.consumers.pop(consumer.id, None)
            consumer_peer.consumed_producer_ids.discard(producer.id)

        def on_producer_close() -> None:
            forget()
            # The peer's current connection: it may have resumed on a new one.
            consumer_peer.connection.notify("consumerClosed", {"consumerId": consumer.id})

        consumer.on("transportclose", forget)
        consumer.on("producerclose", on_producer_close)
        consumer.on("serverclose", lambda reason: on_producer_close())
        consumer.on(
            "producerpause",
            lambda: consumer_peer.connection.notify("consumerPaused", {"consumerId": consumer.id}),
        )
        consumer.on(
            "producerresume",
            lambda: consumer_peer.connection.notify("consumerResumed", {"consumerId": consumer.id}),
        )
        try:
            await consumer_peer.connection.request(
                "newConsumer",
                {
                    "peerId": producer_peer.id,
                    "producerId": producer.id,
                    "id": consumer.id,
                    "kind": consumer.kind,
                    "rtpParameters": consumer.rtp_parameters,
                    "type": consumer.type,
                    "appData": producer.app_data,
                    "producerPaused": consumer.producer_paused,
                },
                response_timeout=self.settings.consumer_request_timeout,
            )
        except ProtooRequestError as error:
            logger.warning(
                "room %s: peer %s refused newConsumer: %s", self.id, consumer_peer.id, error
            )
            consumer.close()
            forget()
            return
        if not consumer.closed:
            # The client's consumer exists: start sending (a keyframe is requested).
            try:
                await consumer.resume()
            except SfuError as error:  # closed in the worker meanwhile; its close event follows
                logger.info("room %s: resuming consumer %s: %s", self.id, consumer.id, error)

    # ---- active speaker -------------------------------------------------------

    def _peer_of_producer(self, producer_id: str) -> Peer | None:
        for peer in self.peers.values():
            if producer_id in peer.producers:
                return peer
        return None

    def _on_dominant_speaker(self, producer_id: str, volume: int) -> None:
        peer = self._peer_of_producer(producer_id)
        if peer is None:
            return
        self._broadcast(
            self._joined_peers(), "activeSpeaker", {"peerId": peer.id, "volume": volume}
        )

    def _on_silence(self) -> None:
        self._broadcast(self._joined_peers(), "activeSpeaker", {"peerId": None})

    # ---- stats -----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {"peers": len(self.peers), "joinedPeers": len(self._joined_peers())}
