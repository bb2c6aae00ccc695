"""The client's signalling session: the protoo connection, ``join``, and the peers in the room.

Join sequence (mediasoup-demo's):

1. open ``ws://host:port/?roomId=R&peerId=P`` with the ``protoo`` subprotocol;
2. ``getRouterRtpCapabilities`` and ``Device.load``;
3. ``createWebRtcTransport`` for sending, then for receiving (before ``join``);
4. ``join {displayName, device, rtpCapabilities, sctpCapabilities}`` -> ``{peers, sessionToken}``.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from sfu.client.protoo import ProtooConnection
from sfu.client.transports import Transports, dump_model

if TYPE_CHECKING:
    from sfu.client.client import SfuClient

__all__ = ["AccessRefusedError", "Session", "default_device_info", "peer_list"]

logger = logging.getLogger(__name__)


def default_device_info() -> dict[str, str]:
    """The ``device`` object sent in ``join`` (mediasoup-demo sends {flag, name, version})."""
    try:
        version = importlib.metadata.version("pymediasoup")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    return {"flag": "python", "name": "pymediasoup", "version": version}


def peer_list(peers: Any) -> list[dict[str, Any]]:
    """Peers of a join or resume reply, each with an ``id``."""
    result = []
    for peer in peers if isinstance(peers, list) else []:
        if isinstance(peer, dict):
            peer_id = peer.get("id", peer.get("peerId"))
            if isinstance(peer_id, str):
                result.append({**peer, "id": peer_id})
    return result


# Why a server with access control (docs/auth.md) refuses the upgrade, by status.
_ACCESS_REFUSALS = {
    401: "the access token is missing, invalid, expired or not yet valid",
    403: "the access token does not admit this peer to this room",
}


class AccessRefusedError(aiohttp.WSServerHandshakeError):
    """The server refused the WebSocket upgrade with HTTP 401 or 403: the access
    token is not accepted. Retrying with the same token cannot help, so the
    client does not reconnect after it (``fatal``); ``status`` is 401 or 403."""


def _access_refused(exc: aiohttp.WSServerHandshakeError) -> AccessRefusedError:
    return AccessRefusedError(
        exc.request_info,
        exc.history,
        status=exc.status,
        message=f"the server refused the WebSocket: HTTP {exc.status}, {_ACCESS_REFUSALS[exc.status]}",
        headers=exc.headers,
    )


class Session:
    """The current protoo connection, the join, and the peers the server told us about.

    ``wire(protoo, previous)`` readies each new connection before its first
    request: the handlers (``previous``'s, if given) and its close callback.
    """

    def __init__(
        self,
        client: SfuClient,
        transports: Transports,
        wire: Callable[[ProtooConnection, ProtooConnection | None], None],
    ) -> None:
        self._client = client
        self._transports = transports
        self._wire = wire
        self.connection: ProtooConnection | None = None
        self.peers: dict[str, dict[str, Any]] = {}
        self.joined = False
        # From the join reply: what `resume` needs (None: the server cannot resume).
        self.session_token: str | None = None

    @property
    def protoo(self) -> ProtooConnection:
        if self.connection is None:
            raise RuntimeError("not connected: call join() first")
        return self.connection

    @property
    def url(self) -> str:
        """The WebSocket URL with this peer's ``roomId``, ``peerId`` and access token."""
        client = self._client
        url = URL(client.url)
        if not url.path:
            url = url.with_path("/")
        url = url.update_query(roomId=client.room_id, peerId=client.peer_id)
        if client.access_token is not None:
            url = url.update_query(access_token=client.access_token)
        return str(url)

    def install(self, protoo: ProtooConnection) -> None:
        protoo.on_notification("newPeer", self._on_new_peer)
        protoo.on_notification("peerClosed", self._on_peer_closed)
        protoo.on_notification("peerDisplayNameChanged", self._on_peer_display_name_changed)
        protoo.on_notification("activeSpeaker", self._on_active_speaker)
        protoo.on_any_notification(self._on_other_notification)

    async def connect(self, previous: ProtooConnection | None) -> ProtooConnection:
        """Open a protoo connection with this client's handlers (or ``previous``'s)."""
        client = self._client
        try:
            protoo = await ProtooConnection.connect(
                self.url, timeout=client.request_timeout, ssl=client.ssl, heartbeat=client.heartbeat
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in _ACCESS_REFUSALS:
                raise _access_refused(exc) from exc
            raise
        self._wire(protoo, previous)
        return protoo

    async def join(self) -> list[dict[str, Any]]:
        """Connect and join; the peers already in the room."""
        self.connection = await self.connect(None)
        response = await self.join_room()
        peers = peer_list(response.get("peers"))
        for peer in peers:
            # Keep a newPeer that raced ahead of the join response.
            self.peers.setdefault(peer["id"], peer)
        self.joined = True
        return peers

    async def join_room(self) -> dict[str, Any]:
        """Capabilities, transports and ``join`` on the current connection; the join reply."""
        client = self._client
        await self._transports.load_device()
        if client.produce_enabled:
            await self._transports.open("send")
        if client.consume_enabled:
            await self._transports.open("recv")

        device = self._transports.device
        join_data: dict[str, Any] = {
            "displayName": client.display_name,
            "device": client.device_info,
            "sctpCapabilities": dump_model(device.sctpCapabilities),
        }
        # mediasoup-demo sends no rtpCapabilities when it does not consume.
        if client.consume_enabled:
            join_data["rtpCapabilities"] = dump_model(device.rtpCapabilities)
        response: dict[str, Any] = await client.request("join", join_data)
        token = response.get("sessionToken")
        self.session_token = token if isinstance(token, str) and token else None
        return response

    # --- peers -------------------------------------------------------------------

    def reconcile_peers(self, listed: Any, before: set[str]) -> None:
        """Match the peers of a join or resume reply; ``before``: the peers known until then."""
        peers = {peer["id"]: peer for peer in peer_list(listed)}
        for peer_id in before - peers.keys():
            if self.peers.pop(peer_id, None) is not None:
                self._client._fire("peerclosed", peer_id)
        for peer_id, peer in peers.items():
            if peer_id not in self.peers:
                self.peers[peer_id] = peer
                self._client._fire("newpeer", peer)

    def _on_new_peer(self, data: dict[str, Any]) -> None:
        # mediasoup-demo sends {id, displayName, device}; newer versions wrap it
        # as {peer: {peerId, displayName, device}}.
        peer = data.get("peer") if isinstance(data.get("peer"), dict) else data
        assert isinstance(peer, dict)
        peer_id = peer.get("id", peer.get("peerId"))
        if not isinstance(peer_id, str):
            logger.warning("newPeer without a peer id: %r", data)
            return
        normalized = {**peer, "id": peer_id}
        self.peers[peer_id] = normalized
        self._client._fire("newpeer", normalized)

    def _on_peer_closed(self, data: dict[str, Any]) -> None:
        peer_id = data.get("peerId")
        if not isinstance(peer_id, str):
            return
        self.peers.pop(peer_id, None)
        self._client._fire("peerclosed", peer_id)

    def _on_peer_display_name_changed(self, data: dict[str, Any]) -> None:
        peer = self.peers.get(data.get("peerId"))  # type: ignore[arg-type]
        if peer is not None and isinstance(data.get("displayName"), str):
            peer["displayName"] = data["displayName"]
        self._client._fire("notification", "peerDisplayNameChanged", data)

    def _on_active_speaker(self, data: dict[str, Any]) -> None:
        self._client._fire("activespeaker", data)

    def _on_other_notification(self, method: str, data: dict[str, Any]) -> None:
        self._client._fire("notification", method, data)
