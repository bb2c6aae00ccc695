"""Sessions: which WebSocket serves which peer, joining, resuming after a
dropped WebSocket, and a peer leaving (with the notifications the others get).

A new peerId becomes a new peer. For a peerId already in the room, the first
request of a connection decides: ``resume`` (with the peer's session token)
takes the existing session over, anything else replaces it. A joined peer
whose WebSocket drops is kept for the grace period so that it can resume.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

from ..auth.claims import VideoGrants
from ..control import ortc
from ..errors import ForbiddenError, InvalidStateError, LimitError, NotFoundError
from ..logs import peer_id_var, room_id_var
from ..signaling.protoo import ProtooConnection
from .peer import Peer
from .requests import ChangeDisplayNameRequest, JoinRequest, ResumeRequest

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

# WebSocket close codes that tell a client not to reconnect (docs/protocol.md).
CLOSE_REPLACED = 4000
CLOSE_SHUTDOWN = 4001
# Removed by RoomService (RemoveParticipant, DeleteRoom), or the room is gone.
CLOSE_REMOVED = 4003
# Transient: the client may join again.
CLOSE_MEDIA_LOST = 4002
CLOSE_LIMIT = 4029


async def _refuse_requests(method: str, data: dict[str, Any]) -> Any:
    raise InvalidStateError("this connection is closing")


async def _ignore_notification(method: str, data: dict[str, Any]) -> None:
    return None


class _Session:
    """One WebSocket's view: which Peer it serves (decided by its first request
    when the peerId is already in the room: ``resume`` or replace)."""

    def __init__(self, connection: ProtooConnection, candidate: Peer) -> None:
        self.connection = connection
        self.candidate = candidate
        self.peer: Peer | None = None
        self.answered = False  # whether a request came already (resume must be first)


class Sessions:
    def __init__(self, room: Room) -> None:
        self._room = room

    async def run(
        self,
        peer_id: str,
        connection: ProtooConnection,
        grants: VideoGrants,
        *,
        name: str = "",
        metadata: str = "",
    ) -> None:
        """Serve one WebSocket until it closes, for a peer with ``grants``."""
        room = self._room
        # Every log line of this session (and of tasks it starts) names the room and peer.
        room_id_var.set(room.id)
        peer_id_var.set(peer_id)
        session = _Session(
            connection, Peer(peer_id, connection, grants, name=name, metadata=metadata)
        )
        if peer_id not in room.peers and len(room.peers) >= 2 * room.limits.max_peers_per_room:
            # Connections that never join count too (each may hold transports and
            # ports), with room for joiners to get the friendlier "room is full" reply.
            connection.close(
                CLOSE_LIMIT, f"room is full: at most {room.limits.max_peers_per_room} peers"
            )
            await connection.run(_refuse_requests, _ignore_notification)
            return
        if peer_id not in room.peers:
            self._adopt(session)
        logger.info("room %s: peer %s connected", room.id, peer_id)

        async def on_request(method: str, data: dict[str, Any]) -> Any:
            first = not session.answered
            session.answered = True
            if method == "resume":
                if not first:
                    raise InvalidStateError("resume must be the first request of a connection")
                return self._resume(session, ResumeRequest.from_wire(data))
            if session.peer is None:
                self._replace(session)
            assert session.peer is not None
            return await room.dispatch(session.peer, method, data)

        async def on_notification(method: str, data: dict[str, Any]) -> None:
            # Newer mediasoup-demo clients send pause/resume/close as notifications.
            if session.peer is not None:
                await room.dispatch(session.peer, method, data)

        try:
            await connection.run(on_request, on_notification)
        finally:
            self._connection_lost(session)

    def _adopt(self, session: _Session) -> None:
        session.peer = session.candidate
        self._room.peers[session.peer.id] = session.peer
        self._room.occupied()

    def _replace(self, session: _Session) -> None:
        old = self._room.peers.get(session.candidate.id)
        # Adopt first: closing the old session must not leave the room empty (and close it).
        self._adopt(session)
        if old is not None:
            logger.info(
                "room %s: peer %s rejoined; replacing its old session", self._room.id, old.id
            )
            self.close_peer(old, CLOSE_REPLACED, "replaced by a newer session with the same peerId")

    def _resume(self, session: _Session, request: ResumeRequest) -> Any:
        room = self._room
        peer = room.peers.get(session.candidate.id)
        if peer is None or peer is session.peer or not peer.joined or peer.closed:
            raise NotFoundError("no session to resume (it expired or never joined): join again")
        if not hmac.compare_digest(peer.session_token, request.session_token):
            raise ForbiddenError("wrong sessionToken for this peer")
        if peer.grace_timer is not None:
            peer.grace_timer.cancel()
            peer.grace_timer = None
        old_connection, peer.connection = peer.connection, session.connection
        old_connection.close(CLOSE_REPLACED, "resumed on another connection")
        session.peer = peer
        logger.info("room %s: peer %s resumed its session", room.id, peer.id)
        # Catch up on producers it missed while away (after this reply is queued).
        room.subscriptions.consume_all(peer, room.joined_peers(excluding=peer))
        return {
            "peers": [other.public_info() for other in room.visible_peers(excluding=peer)],
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
        room = self._room
        peer = session.peer
        if peer is None or peer.closed or peer.connection is not session.connection:
            return  # never adopted, already closed, or resumed on another connection
        grace = room.settings.peer_grace_period
        if peer.joined and not room.closed and not session.connection.clean_close and grace > 0:
            logger.info(
                "room %s: peer %s lost its WebSocket; keeping it %.0f s for a resume",
                room.id,
                peer.id,
                grace,
            )
            peer.grace_timer = asyncio.get_running_loop().call_later(
                grace, self._grace_expired, peer
            )
        else:
            self.close_peer(peer)

    def _grace_expired(self, peer: Peer) -> None:
        peer.grace_timer = None
        if not peer.closed and peer.connection.closed:
            logger.info("room %s: peer %s did not come back; closing it", self._room.id, peer.id)
            self.close_peer(peer)

    def close_peer(self, peer: Peer, code: int = 1000, reason: str = "") -> None:
        """``peer`` leaves: the others get peerClosed, and its transports close
        (with them its producers, and the other peers' consumers of them, who get
        consumerClosed). The last peer out closes the room, at once or after its
        ``departure_timeout``."""
        if peer.closed:
            return
        room = self._room
        peer.closed = True
        if peer.grace_timer is not None:
            peer.grace_timer.cancel()
            peer.grace_timer = None
        if room.peers.get(peer.id) is peer:
            del room.peers[peer.id]
        peer.connection.close(code, reason)
        if peer.joined and not peer.hidden:
            room.broadcast(room.joined_peers(excluding=peer), "peerClosed", {"peerId": peer.id})
        for transport in list(peer.transports.values()):
            transport.close()
        logger.info("room %s: peer %s closed", room.id, peer.id)
        if peer.joined:
            room.observer.emit("peerleft", peer)
        if not room.peers:
            room.close_if_empty(room.departure_timeout)

    # ---- requests ------------------------------------------------------------

    async def join(self, peer: Peer, request: JoinRequest) -> Any:
        room = self._room
        rtp_capabilities = (
            ortc.validate_rtp_capabilities(request.rtp_capabilities)
            if request.rtp_capabilities is not None
            else None
        )
        if len(room.joined_peers()) >= room.participant_cap:
            raise LimitError(f"room is full: at most {room.participant_cap} peers")
        peer.display_name = peer.name or request.display_name
        peer.device = request.device
        peer.rtp_capabilities = rtp_capabilities
        peer.sctp_capabilities = request.sctp_capabilities
        peer.joined = True
        peer.joined_at = time.time()
        others = room.joined_peers(excluding=peer)
        if not peer.hidden:
            room.broadcast(others, "newPeer", peer.public_info())
        room.subscriptions.consume_all(peer, others)
        room.observer.emit("peerjoined", peer)
        return {
            "peers": [other.public_info() for other in room.visible_peers(excluding=peer)],
            "sessionToken": peer.session_token,
        }

    async def change_display_name(self, peer: Peer, request: ChangeDisplayNameRequest) -> Any:
        room = self._room
        if peer.name:
            raise ForbiddenError("the display name comes from the access token (name)")
        old, peer.display_name = peer.display_name, request.display_name
        if peer.hidden:
            return {}
        room.broadcast(
            room.joined_peers(excluding=peer),
            "peerDisplayNameChanged",
            {"peerId": peer.id, "displayName": request.display_name, "oldDisplayName": old},
        )
        return {}
