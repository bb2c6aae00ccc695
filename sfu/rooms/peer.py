"""Peer: one participant's session in a room, and the media objects it owns."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from typing import Any

from ..auth.claims import OPEN_GRANTS, VideoGrants
from ..control.consumer import Consumer
from ..control.data_consumer import DataConsumer
from ..control.data_producer import DataProducer
from ..control.producer import Producer
from ..control.router import Router
from ..control.webrtc_transport import WebRtcTransport
from ..errors import InvalidStateError
from ..models import RtpCapabilities
from ..signaling.protoo import ProtooConnection


class Peer:
    def __init__(
        self,
        peer_id: str,
        connection: ProtooConnection,
        grants: VideoGrants = OPEN_GRANTS,
        *,
        name: str = "",
        metadata: str = "",
    ) -> None:
        self.id = peer_id
        # LiveKit's participant sid: this session's, new when the peerId joins again.
        self.sid = "PA_" + secrets.token_urlsafe(9)
        self.connection = connection
        # What its access token allows (publish, subscribe, data, hidden).
        self.grants = grants
        self.joined = False
        self.closed = False
        # From the access token (LiveKit's participant name and metadata); a
        # token's name is the displayName and the peer cannot change it.
        # RoomService's UpdateParticipant may change both.
        self.name = name
        self.metadata = metadata
        self.display_name = name
        # When join succeeded (epoch seconds); 0 before.
        self.joined_at = 0.0
        self.device: dict[str, Any] = {}
        self.rtp_capabilities: RtpCapabilities | None = None
        self.sctp_capabilities: dict[str, Any] | None = None
        # The room's router (one per worker it spans) that hosts this peer's transports.
        self.router: Router | None = None
        self.transports: dict[str, WebRtcTransport] = {}
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        # Producers this peer consumes or is about to: one consumer per remote producer.
        self.consumed_producer_ids: set[str] = set()
        self.data_producers: dict[str, DataProducer] = {}
        self.data_consumers: dict[str, DataConsumer] = {}
        self.consumed_data_producer_ids: set[str] = set()
        # Its producers an admin muted (RoomService): it may not resume them.
        self.admin_muted: set[str] = set()
        # Proof of identity for `resume` after a dropped WebSocket.
        self.session_token = secrets.token_urlsafe(24)
        # Set while the WebSocket is gone and the peer waits to be resumed.
        self.grace_timer: asyncio.TimerHandle | None = None

    def public_info(self) -> dict[str, Any]:
        return {"id": self.id, "displayName": self.display_name, "device": self.device}

    @property
    def hidden(self) -> bool:
        """A hidden peer (a recorder, a listening bot): the others are not told about it."""
        return self.grants.hidden

    def require_joined(self) -> None:
        if not self.joined:
            raise InvalidStateError("join first: this peer has not joined the room")

    def consuming_transport(self) -> WebRtcTransport | None:
        for transport in self.transports.values():
            if transport.app_data.get("consuming") and not transport.closed:
                return transport
        return None

    def owned(self, kind: str) -> Mapping[str, object]:
        """This peer's objects of ``kind`` ("transport", "producer", "consumer",
        "dataProducer" or "dataConsumer"), by id."""
        owned: dict[str, Mapping[str, object]] = {
            "transport": self.transports,
            "producer": self.producers,
            "consumer": self.consumers,
            "dataProducer": self.data_producers,
            "dataConsumer": self.data_consumers,
        }
        return owned[kind]
