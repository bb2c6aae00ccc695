"""LiveKit's RoomService (livekit/protocol ``livekit_room.proto``) over Twirp
(:mod:`.twirp`), on our rooms, as LiveKit's ``pkg/service/roomservice.go``
behaves: grants checked first, then the room and participant named.

Left out (docs/auth.md): UpdateSubscriptions, ForwardParticipant,
MoveParticipant, PerformRpc and the agent/egress parts of CreateRoom.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message
from livekit.protocol import models
from livekit.protocol import room as rooms

from ..auth.claims import AccessClaims, VideoGrants
from ..errors import LimitError, SfuError
from ..rooms.peer import Peer
from ..rooms.requests import MAX_NAME_LENGTH, ROOM_OR_PEER_ID
from ..rooms.room import Room
from .info import participant_info, room_info, track_info
from .twirp import TwirpError, TwirpMethod, TwirpService

if TYPE_CHECKING:
    from ..server import SfuServer

__all__ = ["SERVICE_NAME", "RoomService"]

logger = logging.getLogger(__name__)

SERVICE_NAME = "livekit.RoomService"
# LiveKit's default limit.max_metadata_size.
MAX_METADATA_BYTES = 64000

_SOURCE_NAMES = {
    models.TrackSource.CAMERA: "camera",
    models.TrackSource.MICROPHONE: "microphone",
    models.TrackSource.SCREEN_SHARE: "screen_share",
    models.TrackSource.SCREEN_SHARE_AUDIO: "screen_share_audio",
}


class RoomService:
    def __init__(self, server: SfuServer) -> None:
        self._server = server
        methods: dict[str, TwirpMethod[Any]] = {
            "CreateRoom": TwirpMethod(rooms.CreateRoomRequest, self.create_room),
            "ListRooms": TwirpMethod(rooms.ListRoomsRequest, self.list_rooms),
            "DeleteRoom": TwirpMethod(rooms.DeleteRoomRequest, self.delete_room),
            "ListParticipants": TwirpMethod(rooms.ListParticipantsRequest, self.list_participants),
            "GetParticipant": TwirpMethod(rooms.RoomParticipantIdentity, self.get_participant),
            "RemoveParticipant": TwirpMethod(
                rooms.RoomParticipantIdentity, self.remove_participant
            ),
            "MutePublishedTrack": TwirpMethod(
                rooms.MuteRoomTrackRequest, self.mute_published_track
            ),
            "UpdateParticipant": TwirpMethod(
                rooms.UpdateParticipantRequest, self.update_participant
            ),
            "UpdateRoomMetadata": TwirpMethod(
                rooms.UpdateRoomMetadataRequest, self.update_room_metadata
            ),
            "SendData": TwirpMethod(rooms.SendDataRequest, self.send_data),
        }
        self.twirp = TwirpService(SERVICE_NAME, methods, server.verifier)

    # ---- grants and lookups ----------------------------------------------------

    @staticmethod
    def _require(allowed: bool, what: str) -> None:
        if not allowed:
            raise TwirpError("permission_denied", f"the token lacks the {what} grant")

    def _admin_room(self, claims: AccessClaims, room_id: str) -> Room:
        """The room ``room_id``, for a token with roomAdmin for it."""
        grants = claims.video
        self._require(grants.room_admin, "roomAdmin")
        if grants.room != room_id:
            raise TwirpError(
                "permission_denied", f"the token's roomAdmin is not for room {room_id!r}"
            )
        return self._room(room_id)

    def _room(self, room_id: str) -> Room:
        room = self._server.live_room(room_id)
        if room is None:
            raise TwirpError("not_found", f"room {room_id!r} does not exist")
        return room

    @staticmethod
    def _check_sizes(*, name: str = "", metadata: str = "") -> None:
        if len(name) > MAX_NAME_LENGTH:
            raise TwirpError("invalid_argument", f"name is over {MAX_NAME_LENGTH} characters")
        if len(metadata.encode()) > MAX_METADATA_BYTES:
            raise TwirpError("invalid_argument", f"metadata is over {MAX_METADATA_BYTES} bytes")

    @staticmethod
    def _participant(room: Room, identity: str) -> Peer:
        peer = room.peers.get(identity)
        if peer is None or peer.closed:
            raise TwirpError("not_found", f"participant {identity!r} is not in room {room.id}")
        return peer

    # ---- rooms -----------------------------------------------------------------

    async def create_room(self, claims: AccessClaims, request: rooms.CreateRoomRequest) -> Message:
        self._require(claims.video.room_create, "roomCreate")
        if not ROOM_OR_PEER_ID.match(request.name):
            raise TwirpError(
                "invalid_argument", "name must be 1-128 characters of letters, digits and _.:@+-"
            )
        self._check_sizes(metadata=request.metadata)
        try:
            room = await self._server.create_room(
                request.name,
                empty_timeout=request.empty_timeout,
                departure_timeout=request.departure_timeout,
                max_participants=request.max_participants,
                metadata=request.metadata,
            )
        except LimitError as error:
            raise TwirpError("resource_exhausted", str(error)) from None
        except SfuError as error:  # no worker up now (one is restarting)
            raise TwirpError("unavailable", f"cannot open the room now: {error}") from None
        return room_info(room)

    async def list_rooms(self, claims: AccessClaims, request: rooms.ListRoomsRequest) -> Message:
        self._require(claims.video.room_list, "roomList")
        names = set(request.names)
        found = [
            room_info(room)
            for room in list(self._server.rooms.values())
            if not room.closed and (not names or room.id in names)
        ]
        return rooms.ListRoomsResponse(rooms=found)

    async def delete_room(self, claims: AccessClaims, request: rooms.DeleteRoomRequest) -> Message:
        self._require(claims.video.room_create, "roomCreate")
        room = self._room(request.room)
        logger.info("room %s: deleted by RoomService", room.id)
        for peer in list(room.peers.values()):
            room.admin.remove_peer(peer, "the room was deleted")
        room.close()
        return rooms.DeleteRoomResponse()

    async def update_room_metadata(
        self, claims: AccessClaims, request: rooms.UpdateRoomMetadataRequest
    ) -> Message:
        room = self._admin_room(claims, request.room)
        self._check_sizes(metadata=request.metadata)
        room.metadata = request.metadata
        return room_info(room)

    async def send_data(self, claims: AccessClaims, request: rooms.SendDataRequest) -> Message:
        room = self._admin_room(claims, request.room)
        if request.destination_identities or request.destination_sids:
            # The server's data producer reaches every peer that receives data;
            # per-peer delivery would need mediasoup's subchannels.
            raise TwirpError(
                "invalid_argument",
                "destination_identities is not supported: SendData reaches the whole room",
            )
        if len(request.data) > self._server.config.media.max_sctp_message_size:
            raise TwirpError(
                "invalid_argument",
                f"data is larger than max_sctp_message_size "
                f"({self._server.config.media.max_sctp_message_size} bytes)",
            )
        # The topic is the data channel's label (the browser's chat shows "chat");
        # LOSSY is sent reliably too: the server's channel is ordered and reliable.
        await room.send_data(bytes(request.data), label=request.topic or "chat")
        return rooms.SendDataResponse()

    # ---- participants ------------------------------------------------------------

    async def list_participants(
        self, claims: AccessClaims, request: rooms.ListParticipantsRequest
    ) -> Message:
        room = self._admin_room(claims, request.room)
        peers = [peer for peer in list(room.peers.values()) if not peer.closed]
        return rooms.ListParticipantsResponse(participants=[participant_info(p) for p in peers])

    async def get_participant(
        self, claims: AccessClaims, request: rooms.RoomParticipantIdentity
    ) -> Message:
        room = self._admin_room(claims, request.room)
        return participant_info(self._participant(room, request.identity))

    async def remove_participant(
        self, claims: AccessClaims, request: rooms.RoomParticipantIdentity
    ) -> Message:
        room = self._admin_room(claims, request.room)
        room.admin.remove_peer(self._participant(room, request.identity))
        return rooms.RemoveParticipantResponse()

    async def mute_published_track(
        self, claims: AccessClaims, request: rooms.MuteRoomTrackRequest
    ) -> Message:
        room = self._admin_room(claims, request.room)
        peer = self._participant(room, request.identity)
        producer = peer.producers.get(request.track_sid)
        if producer is None:
            raise TwirpError(
                "not_found", f"participant {peer.id!r} has no track {request.track_sid!r}"
            )
        await room.admin.mute_producer(peer, producer, request.muted)
        return rooms.MuteRoomTrackResponse(track=track_info(producer))

    async def update_participant(
        self, claims: AccessClaims, request: rooms.UpdateParticipantRequest
    ) -> Message:
        room = self._admin_room(claims, request.room)
        peer = self._participant(room, request.identity)
        self._check_sizes(name=request.name, metadata=request.metadata)
        # As LiveKit's: empty name or metadata leave them; a permission replaces
        # the whole of it.
        room.admin.update_peer(
            peer,
            name=request.name or None,
            metadata=request.metadata or None,
            grants=_grants(peer.grants, request.permission)
            if request.HasField("permission")
            else None,
        )
        return participant_info(peer)


def _grants(current: VideoGrants, permission: models.ParticipantPermission) -> VideoGrants:
    """``current`` with the publish, subscribe and data grants of ``permission``."""
    unknown = [s for s in permission.can_publish_sources if s not in _SOURCE_NAMES]
    if unknown:
        raise TwirpError(
            "invalid_argument", f"unknown track sources in can_publish_sources: {unknown}"
        )
    return current.model_copy(
        update={
            "can_publish": permission.can_publish,
            "can_subscribe": permission.can_subscribe,
            "can_publish_data": permission.can_publish_data,
            "can_publish_sources": [_SOURCE_NAMES[s] for s in permission.can_publish_sources],
        }
    )
