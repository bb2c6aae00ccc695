"""Room: the peers of one room, the requests they send, and the routers it drives.

Forwards every producer to every other joined peer ("auto-consume", in both
directions), and tells peers about each other: newPeer, peerClosed,
consumerClosed, consumerPaused/Resumed, activeSpeaker.

The Room keeps the peers by id, parses each request's data once and hands it
to the part that serves it, and runs the close cascade. Its parts:

- :mod:`.sessions`: which WebSocket serves which peer, join, resume, leaving;
- :mod:`.placement`: which router (one per worker the room spans) hosts a peer;
- :mod:`.peer_media`: a peer's transports and producers;
- :mod:`.subscriptions`: consumers of the other peers' producers;
- :mod:`.data_channels`: data producers and data consumers (SCTP);
- :mod:`.requests`: the typed data of each request.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pyee.asyncio import AsyncIOEventEmitter

from ..auth.claims import OPEN_GRANTS, VideoGrants
from ..config import IceServerConfig, LimitsConfig
from ..control.active_speaker_observer import ActiveSpeakerObserver
from ..control.router import Router
from ..control.worker_pool import WorkerPool
from ..errors import ForbiddenError, InvalidRequestError, InvalidStateError, NotFoundError
from ..signaling.protoo import ProtooConnection, notification_text
from .admin import RoomAdmin
from .data_channels import DataChannels, DataListener
from .peer import Peer
from .peer_media import PeerMedia
from .placement import Placement
from .requests import (
    MAX_ID_LENGTH,
    ChangeDisplayNameRequest,
    ConnectWebRtcTransportRequest,
    ConsumerRequest,
    CreateWebRtcTransportRequest,
    DataConsumerRequest,
    DataProducerRequest,
    JoinRequest,
    NoData,
    ProduceDataRequest,
    ProduceRequest,
    ProducerRequest,
    Request,
    SetConsumerPreferredLayersRequest,
    SetConsumerPriorityRequest,
    TargetedRequest,
    TransportRequest,
)
from .sessions import (
    CLOSE_LIMIT,
    CLOSE_MEDIA_LOST,
    CLOSE_REMOVED,
    CLOSE_REPLACED,
    CLOSE_SHUTDOWN,
    Sessions,
)
from .subscriptions import Subscriptions

__all__ = [
    "CLOSE_LIMIT",
    "CLOSE_MEDIA_LOST",
    "CLOSE_REMOVED",
    "CLOSE_REPLACED",
    "CLOSE_SHUTDOWN",
    "Room",
    "RoomSettings",
    "Route",
]

logger = logging.getLogger(__name__)

RequestT = TypeVar("RequestT", bound=Request)
T = TypeVar("T")


@dataclass(frozen=True)
class RoomSettings:
    consumer_request_timeout: float = 10.0
    peer_grace_period: float = 10.0
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    ice_servers: tuple[IceServerConfig, ...] = ()
    # Peers per router before the room spreads to another worker (0: never).
    max_peers_per_router: int = 50


@dataclass(frozen=True)
class Route(Generic[RequestT]):
    """What a protoo method's data parses into, and who serves it."""

    model: type[RequestT]
    handler: Callable[[Peer, RequestT], Awaitable[Any]]
    # Checked before anything else (the peer's grants): a refusal whatever the data.
    guard: Callable[[Peer], None] | None = None


class Room(AsyncIOEventEmitter):
    """Events: ``close``.

    ``observer`` events, for monitoring and the control plane (webhooks):
    ``peerjoined(peer)``, ``peerleft(peer)`` (a joined peer closed),
    ``newproducer(peer, producer)``, ``producerclose(peer, producer)``, ``close()``.
    """

    def __init__(
        self,
        room_id: str,
        pool: WorkerPool,
        media_codecs: list[dict[str, Any]],
        router: Router,
        speaker_observer: ActiveSpeakerObserver,
        settings: RoomSettings | None = None,
    ) -> None:
        super().__init__()
        self.id = room_id
        # LiveKit's room sid: stable for this room's lifetime, new if the name is reused.
        self.sid = "RM_" + secrets.token_urlsafe(9)
        self.created_at = time.time()
        self.metadata = ""
        # LiveKit's room settings, in seconds and peers (0: the server's defaults).
        self.empty_timeout = 0
        self.max_participants = 0
        # Seconds it stays open after its last peer leaves (0: it closes at once).
        self.departure_timeout = 0
        self._empty_timer: asyncio.TimerHandle | None = None
        self.observer = AsyncIOEventEmitter()
        self.settings = settings or RoomSettings()
        self.limits = self.settings.limits
        self.closed = False
        self.peers: dict[str, Peer] = {}
        self.speaker_observer = speaker_observer
        self.placement = Placement(
            router,
            room_id=room_id,
            pool=pool,
            media_codecs=media_codecs,
            max_peers_per_router=self.settings.max_peers_per_router,
            members=self.peers.values,
            on_worker_lost=self._on_worker_lost,
        )
        self.sessions = Sessions(self)
        self.media = PeerMedia(self)
        self.subscriptions = Subscriptions(self)
        self.data = DataChannels(self)
        self.admin = RoomAdmin(self)
        self._routes = self._make_routes()
        speaker_observer.on("dominantspeaker", self._on_dominant_speaker)
        speaker_observer.on("silence", self._on_silence)

    def _make_routes(self) -> dict[str, Route[Any]]:
        sessions, media, subscriptions, data = (
            self.sessions,
            self.media,
            self.subscriptions,
            self.data,
        )
        return {
            "getRouterRtpCapabilities": Route(NoData, self._get_router_rtp_capabilities),
            "join": Route(JoinRequest, sessions.join),
            "changeDisplayName": Route(ChangeDisplayNameRequest, sessions.change_display_name),
            "createWebRtcTransport": Route(
                CreateWebRtcTransportRequest, media.create_webrtc_transport
            ),
            "connectWebRtcTransport": Route(
                ConnectWebRtcTransportRequest, media.connect_webrtc_transport
            ),
            "restartIce": Route(TransportRequest, media.restart_ice),
            "getTransportStats": Route(TransportRequest, media.get_transport_stats),
            "produce": Route(ProduceRequest, media.produce),
            "closeProducer": Route(ProducerRequest, media.close_producer),
            "pauseProducer": Route(ProducerRequest, media.pause_producer),
            "resumeProducer": Route(ProducerRequest, media.resume_producer),
            "getProducerStats": Route(ProducerRequest, media.get_producer_stats),
            "produceData": Route(ProduceDataRequest, data.produce_data, data.may_produce_data),
            "getDataProducerStats": Route(DataProducerRequest, data.get_data_producer_stats),
            "getDataConsumerStats": Route(DataConsumerRequest, data.get_data_consumer_stats),
            "pauseConsumer": Route(ConsumerRequest, subscriptions.pause_consumer),
            "resumeConsumer": Route(ConsumerRequest, subscriptions.resume_consumer),
            "setConsumerPreferredLayers": Route(
                SetConsumerPreferredLayersRequest, subscriptions.set_consumer_preferred_layers
            ),
            "setConsumerPriority": Route(
                SetConsumerPriorityRequest, subscriptions.set_consumer_priority
            ),
            "requestConsumerKeyFrame": Route(
                ConsumerRequest, subscriptions.request_consumer_key_frame
            ),
            "getConsumerStats": Route(ConsumerRequest, subscriptions.get_consumer_stats),
        }

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
            speaker_observer = await router.create_active_speaker_observer(interval=0.3)
        except Exception:
            router.close()
            raise
        return cls(room_id, pool, media_codecs, router, speaker_observer, settings)

    @property
    def router(self) -> Router:
        """The first router; it hosts the active speaker observer."""
        return self.placement.router

    @property
    def routers(self) -> dict[str, Router]:
        """Every router of the room, by id (one per worker it spans)."""
        return self.placement.routers

    # ---- peers ---------------------------------------------------------------

    async def run_session(
        self,
        peer_id: str,
        connection: ProtooConnection,
        grants: VideoGrants = OPEN_GRANTS,
        *,
        name: str = "",
        metadata: str = "",
    ) -> None:
        """Serve one WebSocket until it closes (see :mod:`.sessions`); ``name``
        and ``metadata`` come from the access token."""
        await self.sessions.run(peer_id, connection, grants, name=name, metadata=metadata)

    def close_if_empty(self, after: float) -> None:
        """With nobody in it, the room closes ``after`` seconds from now (0: now)
        unless a peer comes first."""
        if self.closed or self.peers:
            return
        self.occupied()
        if after <= 0:
            self.close()
        else:
            self._empty_timer = asyncio.get_running_loop().call_later(after, self._empty_expired)

    def occupied(self) -> None:
        """A peer came: the room no longer closes for being empty."""
        if self._empty_timer is not None:
            self._empty_timer.cancel()
            self._empty_timer = None

    def _empty_expired(self) -> None:
        self._empty_timer = None
        if not self.peers:
            logger.info("room %s: empty for its timeout; closing", self.id)
            self.close()

    @property
    def participant_cap(self) -> int:
        """Joined peers allowed: ``max_participants`` within the server's limit."""
        cap = self.limits.max_peers_per_room
        return min(cap, self.max_participants) if self.max_participants else cap

    def joined_peers(self, excluding: Peer | None = None) -> list[Peer]:
        return [p for p in self.peers.values() if p.joined and not p.closed and p is not excluding]

    def visible_peers(self, excluding: Peer | None = None) -> list[Peer]:
        """The joined peers the others are told about (not the hidden ones)."""
        return [p for p in self.joined_peers(excluding) if not p.hidden]

    @staticmethod
    def broadcast(peers: list[Peer], method: str, data: dict[str, Any]) -> None:
        """The same notification to many peers, serialized once: a room of N members
        that N peers join sends N^2 of them."""
        try:
            text = notification_text(method, data)
        except (ValueError, TypeError, RecursionError):
            logger.error("cannot serialize a %r notification; dropped", method)
            return
        for peer in peers:
            peer.connection.send_text(text)

    def own(self, peer: Peer, mine: Mapping[str, T], kind: str, object_id: str) -> T:
        """``mine[object_id]``, one of ``peer``'s own objects of ``kind``;
        ForbiddenError if another peer owns it, NotFoundError if nobody does."""
        found = mine.get(object_id)
        if found is not None:
            return found
        if any(object_id in p.owned(kind) for p in self.peers.values()):
            raise ForbiddenError(f"{kind} {object_id} belongs to another peer")
        raise NotFoundError(f"{kind} {object_id} not found")

    # ---- requests ------------------------------------------------------------

    async def dispatch(self, peer: Peer, method: str, data: dict[str, Any]) -> Any:
        """Serve one request (or notification) of ``peer``: its data is parsed
        here, once, into the method's typed request."""
        if peer.closed:
            raise InvalidStateError("this session was replaced by a newer one")
        route = self._routes.get(method)
        if route is None:
            raise NotFoundError(f"unknown method {method!r}")
        model = route.model
        if route.guard is not None:
            route.guard(peer)
        # The peer's state, then the object named, then the rest of the data:
        # the errors come in that order.
        if model.required_state == "joined":
            peer.require_joined()
        elif model.required_state == "not joined" and peer.joined:
            raise InvalidStateError("already joined")
        try:
            request = model.from_wire(data)
        except InvalidRequestError:
            self._check_target(peer, model, data)
            raise
        return await route.handler(peer, request)

    def _check_target(self, peer: Peer, model: type[Request], data: dict[str, Any]) -> None:
        """For data that failed to parse: an unknown or foreign object it names is
        the error to report (the handler looks its object up first)."""
        if not issubclass(model, TargetedRequest):
            return
        object_id = data.get(model.target_key)
        if isinstance(object_id, str) and len(object_id) <= MAX_ID_LENGTH:
            self.own(peer, peer.owned(model.target_kind), model.target_kind, object_id)

    async def _get_router_rtp_capabilities(self, peer: Peer, request: NoData) -> Any:
        return self.router.rtp_capabilities

    # ---- data ------------------------------------------------------------------

    async def send_data(self, payload: str | bytes, *, label: str = "chat") -> None:
        """Post ``payload`` (text or binary) from the server to every joined peer
        that receives data, on the server's own data producer of ``label``
        (ordered, reliable; ``newDataConsumer`` with ``peerId`` null). Peers that
        join later get the producer, not earlier messages. For RoomService's
        SendData and system messages."""
        await self.data.send_data(payload, label)

    async def listen_data(self, listener: DataListener) -> Callable[[], None]:
        """Hear every peer's data messages: ``listener(peer_id, label, message)``,
        through a direct data consumer of each data producer (they cross the channel:
        for bots and moderation, not for every message of a busy room). Returns
        the function that stops listening."""
        return await self.data.listen(listener)

    # ---- the close cascade -----------------------------------------------------

    def _on_worker_lost(self, router: Router) -> None:
        """The worker process under ``router`` died: its peers must join again
        (a new room, or another router of this one, on a live worker)."""
        if self.closed:
            return
        lost = self.placement.peers_on(router)
        logger.warning(
            "room %s: the media worker of router %s died; %d peers must rejoin",
            self.id,
            router.id,
            len(lost),
        )
        for peer in lost:
            self.sessions.close_peer(
                peer, CLOSE_MEDIA_LOST, "the media worker restarted: join again"
            )
        if router is self.router:
            self.close()

    def shutdown(self, reason: str) -> None:
        """Tell every peer the server is going away, then close the room."""
        for peer in list(self.peers.values()):
            peer.connection.notify("serverShutdown", {"reason": reason})
            self.sessions.close_peer(peer, CLOSE_SHUTDOWN, reason)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.occupied()
        for peer in list(self.peers.values()):
            self.sessions.close_peer(peer)
        self.subscriptions.close()
        self.data.close()
        self.placement.close()
        logger.info("room %s: closed", self.id)
        self.emit("close")
        self.observer.emit("close")

    # ---- active speaker --------------------------------------------------------

    def _on_dominant_speaker(self, producer_id: str, volume: int) -> None:
        peer = next((p for p in self.peers.values() if producer_id in p.producers), None)
        if peer is None:
            return
        self.broadcast(self.joined_peers(), "activeSpeaker", {"peerId": peer.id, "volume": volume})

    def _on_silence(self) -> None:
        self.broadcast(self.joined_peers(), "activeSpeaker", {"peerId": None})

    # ---- stats -----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {"peers": len(self.peers), "joinedPeers": len(self.joined_peers())}
