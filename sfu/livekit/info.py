"""Our objects as LiveKit's protobuf messages (``livekit.protocol.models``):
a Room as ``Room``, a Peer as ``ParticipantInfo``, a Producer as ``TrackInfo``.

One mapping, shared by RoomService replies and webhook events, so both show
the same values: ``Room.name`` is the roomId, ``ParticipantInfo.identity`` the
peerId, ``TrackInfo.sid`` the producer's id and ``muted`` whether it is paused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from livekit.protocol import models

from ..auth.claims import track_source

if TYPE_CHECKING:
    from ..control.producer import Producer
    from ..rooms.peer import Peer
    from ..rooms.room import Room

__all__ = ["participant_info", "participant_permission", "room_info", "track_info"]

_SOURCES = {
    "camera": models.TrackSource.CAMERA,
    "microphone": models.TrackSource.MICROPHONE,
    "screen_share": models.TrackSource.SCREEN_SHARE,
    "screen_share_audio": models.TrackSource.SCREEN_SHARE_AUDIO,
}


def room_info(room: Room) -> models.Room:
    peers = room.visible_peers()
    return models.Room(
        sid=room.sid,
        name=room.id,
        empty_timeout=room.empty_timeout,
        max_participants=room.max_participants,
        creation_time=int(room.created_at),
        creation_time_ms=int(room.created_at * 1000),
        metadata=room.metadata,
        num_participants=len(peers),
        num_publishers=sum(1 for peer in peers if peer.producers),
    )


def track_info(producer: Producer) -> models.TrackInfo:
    parameters = producer.rtp_parameters
    codec = parameters.codecs[0] if parameters.codecs else None
    return models.TrackInfo(
        sid=producer.id,
        type=models.TrackType.AUDIO if producer.kind == "audio" else models.TrackType.VIDEO,
        name=str(producer.app_data.get("name", producer.app_data.get("source", ""))),
        muted=producer.paused,
        simulcast=len(parameters.encodings) > 1,
        source=_SOURCES[track_source(producer.kind, producer.app_data)],
        mime_type=codec.mime_type if codec is not None else "",
        mid=parameters.mid or "",
    )


def participant_permission(peer: Peer) -> models.ParticipantPermission:
    grants = peer.grants
    return models.ParticipantPermission(
        can_subscribe=grants.can_subscribe,
        can_publish=grants.can_publish and not grants.hidden,
        can_publish_data=grants.can_publish_data and not grants.hidden,
        can_publish_sources=[_SOURCES[source] for source in grants.can_publish_sources],
        hidden=grants.hidden,
    )


def participant_info(peer: Peer) -> models.ParticipantInfo:
    if peer.closed:
        state = models.ParticipantInfo.State.DISCONNECTED
    elif peer.joined:
        state = models.ParticipantInfo.State.ACTIVE
    else:
        state = models.ParticipantInfo.State.JOINING
    return models.ParticipantInfo(
        sid=peer.sid,
        identity=peer.id,
        state=state,
        tracks=[track_info(producer) for producer in peer.producers.values()],
        metadata=peer.metadata,
        joined_at=int(peer.joined_at),
        joined_at_ms=int(peer.joined_at * 1000),
        name=peer.display_name,
        permission=participant_permission(peer),
        is_publisher=bool(peer.producers),
        kind=models.ParticipantInfo.Kind.STANDARD,
    )
