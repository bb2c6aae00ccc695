"""A peer's own media objects: its WebRTC transports (on the router placement
chose) and its producers, which every other joined peer then consumes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..control.producer import Producer
from ..control.webrtc_transport import WebRtcTransport
from ..errors import ForbiddenError, InvalidStateError, LimitError
from ..signaling.ice_servers import ice_servers_for
from .peer import Peer
from .requests import (
    ConnectWebRtcTransportRequest,
    CreateWebRtcTransportRequest,
    ProduceRequest,
    ProducerRequest,
    TransportRequest,
)
from .sessions import CLOSE_MEDIA_LOST

if TYPE_CHECKING:
    from .room import Room


class PeerMedia:
    def __init__(self, room: Room) -> None:
        self._room = room

    def _transport(self, peer: Peer, request: TransportRequest) -> WebRtcTransport:
        return self._room.own(peer, peer.transports, "transport", request.transport_id)

    def _producer(self, peer: Peer, request: ProducerRequest) -> Producer:
        return self._room.own(peer, peer.producers, "producer", request.producer_id)

    # ---- transports ----------------------------------------------------------

    async def create_webrtc_transport(
        self, peer: Peer, request: CreateWebRtcTransportRequest
    ) -> Any:
        room = self._room
        limit = room.limits.max_transports_per_peer
        if len(peer.transports) >= limit:
            raise LimitError(f"a peer may have at most {limit} transports")
        router = await room.placement.router_for(peer)
        transport = await router.create_webrtc_transport(
            force_tcp=request.force_tcp,
            enable_sctp=request.sctp_capabilities is not None,
            app_data={
                "peerId": peer.id,
                "producing": request.producing,
                "consuming": request.consuming,
            },
        )
        if peer.closed or transport.closed:
            transport.close()
            raise InvalidStateError("peer closed" if peer.closed else "the transport closed")
        peer.transports[transport.id] = transport
        transport.observer.on("close", lambda: peer.transports.pop(transport.id, None))
        transport.on(
            "serverclose", lambda reason: self._on_transport_closed(peer, transport, reason)
        )
        if request.consuming and peer.joined:
            # A consuming transport created after join: consume what exists.
            room.subscriptions.consume_all(peer, room.joined_peers(excluding=peer))
        return {
            "id": transport.id,
            "iceParameters": transport.ice_parameters,
            "iceCandidates": transport.ice_candidates,
            "dtlsParameters": transport.dtls_parameters,
            "sctpParameters": transport.sctp_parameters,
            # STUN/TURN servers for the client's side (an addition over mediasoup-demo).
            "iceServers": ice_servers_for(room.settings.ice_servers, peer.id),
        }

    def _on_transport_closed(self, peer: Peer, transport: WebRtcTransport, reason: str) -> None:
        peer.connection.notify("transportClosed", {"transportId": transport.id, "reason": reason})
        if reason == "ice-timeout" and peer.joined:
            # Its media path has been dead for ice_timeout seconds: the peer is
            # gone for the others (it may join again).
            self._room.sessions.close_peer(
                peer, CLOSE_MEDIA_LOST, "media connection lost (ICE timeout)"
            )

    async def connect_webrtc_transport(
        self, peer: Peer, request: ConnectWebRtcTransportRequest
    ) -> Any:
        await self._transport(peer, request).connect(request.dtls_parameters)
        return {}

    async def restart_ice(self, peer: Peer, request: TransportRequest) -> Any:
        return await self._transport(peer, request).restart_ice()

    async def get_transport_stats(self, peer: Peer, request: TransportRequest) -> Any:
        return await self._transport(peer, request).get_stats()

    # ---- producers -----------------------------------------------------------

    async def produce(self, peer: Peer, request: ProduceRequest) -> Any:
        room = self._room
        refusal = peer.grants.publish_refusal(request.kind, request.app_data)
        if refusal is not None:
            raise ForbiddenError(refusal)
        transport = self._transport(peer, request)
        limit = room.limits.max_producers_per_peer
        if len(peer.producers) >= limit:
            raise LimitError(f"a peer may have at most {limit} producers")
        producer = await transport.produce(
            kind=request.kind,
            rtp_parameters=request.rtp_parameters,
            paused=request.paused,
            app_data=request.app_data,
        )
        if producer.closed:  # its transport closed meanwhile
            raise InvalidStateError("the transport closed")
        peer.producers[producer.id] = producer
        producer.observer.on("close", lambda: self._on_producer_closed(peer, producer))
        producer.on(
            "serverclose",
            lambda reason: peer.connection.notify(
                "producerClosed", {"producerId": producer.id, "reason": reason}
            ),
        )
        if producer.kind == "audio":
            await room.placement.observe(producer, room.speaker_observer)
        for other in room.joined_peers(excluding=peer):
            room.subscriptions.consume(other, peer, producer)
        room.observer.emit("newproducer", peer, producer)
        return {"id": producer.id}

    def _on_producer_closed(self, peer: Peer, producer: Producer) -> None:
        peer.admin_muted.discard(producer.id)
        if peer.producers.pop(producer.id, None) is not None:
            self._room.observer.emit("producerclose", peer, producer)

    async def close_producer(self, peer: Peer, request: ProducerRequest) -> Any:
        self._producer(peer, request).close()
        return {}

    async def pause_producer(self, peer: Peer, request: ProducerRequest) -> Any:
        await self._producer(peer, request).pause()
        return {}

    async def resume_producer(self, peer: Peer, request: ProducerRequest) -> Any:
        producer = self._producer(peer, request)
        if producer.id in peer.admin_muted:
            raise ForbiddenError("an admin muted this producer; only an admin can unmute it")
        await producer.resume()
        return {}

    async def get_producer_stats(self, peer: Peer, request: ProducerRequest) -> Any:
        return await self._producer(peer, request).get_stats()
