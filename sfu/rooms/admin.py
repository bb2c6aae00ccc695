"""RoomAdmin: what an administrator (LiveKit's RoomService) does to a room's
peers, with the notifications the peers get (docs/protocol.md):

- remove a peer (its WebSocket closes with 4003, the others get ``peerClosed``);
- mute or unmute one of its producers (the others get ``consumerPaused`` or
  ``consumerResumed``, the owner ``producerMutedByAdmin``; the owner cannot
  resume what an admin muted);
- change its name, metadata and grants, at once: a producer the new grants
  forbid closes (the owner gets ``producerClosed``), and without
  ``canSubscribe`` its consumers and data consumers close (it gets
  ``consumerClosed`` and ``dataConsumerClosed``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..auth.claims import VideoGrants
from ..control.producer import Producer
from .peer import Peer
from .sessions import CLOSE_REMOVED

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

# The `reason` of producerClosed for a producer the peer may no longer publish.
REASON_PERMISSION = "permission-revoked"


class RoomAdmin:
    def __init__(self, room: Room) -> None:
        self._room = room

    def remove_peer(self, peer: Peer, reason: str = "removed by an admin") -> None:
        logger.info("room %s: peer %s removed by an admin", self._room.id, peer.id)
        self._room.sessions.close_peer(peer, CLOSE_REMOVED, reason)

    async def mute_producer(self, peer: Peer, producer: Producer, muted: bool) -> None:
        """Pause (``muted``) or resume ``producer`` of ``peer`` as an admin."""
        if muted:
            peer.admin_muted.add(producer.id)
            await producer.pause()
        else:
            peer.admin_muted.discard(producer.id)
            await producer.resume()
        peer.connection.notify("producerMutedByAdmin", {"producerId": producer.id, "muted": muted})

    def update_peer(
        self,
        peer: Peer,
        *,
        name: str | None = None,
        metadata: str | None = None,
        grants: VideoGrants | None = None,
    ) -> None:
        room = self._room
        if metadata is not None:
            peer.metadata = metadata
        if name is not None and name != peer.display_name:
            # LiveKit's name, as a token's: the peer can no longer change it.
            peer.name = name
            old, peer.display_name = peer.display_name, name
            if peer.joined and not peer.hidden:
                room.broadcast(
                    room.joined_peers(excluding=peer),
                    "peerDisplayNameChanged",
                    {"peerId": peer.id, "displayName": name, "oldDisplayName": old},
                )
        if grants is not None:
            self._change_grants(peer, grants)

    def _change_grants(self, peer: Peer, grants: VideoGrants) -> None:
        room = self._room
        could_subscribe = peer.grants.can_subscribe
        peer.grants = grants
        for producer in list(peer.producers.values()):
            if grants.publish_refusal(producer.kind, producer.app_data) is not None:
                producer.close()
                peer.connection.notify(
                    "producerClosed", {"producerId": producer.id, "reason": REASON_PERMISSION}
                )
        if not grants.can_subscribe:
            room.subscriptions.close_consumers(peer)
            room.data.close_data_consumers(peer)
        elif not could_subscribe and peer.joined:
            room.subscriptions.consume_all(peer, room.joined_peers(excluding=peer))
