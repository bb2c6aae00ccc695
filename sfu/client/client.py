"""SfuClient: joins a room the way mediasoup-demo's client does, on pymediasoup + aiortc.

Join sequence (mediasoup-demo's):

1. open ``ws://host:port/?roomId=R&peerId=P`` with the ``protoo`` subprotocol;
2. ``getRouterRtpCapabilities`` and ``Device.load``;
3. ``createWebRtcTransport`` for sending, then for receiving (before ``join``);
4. ``join {displayName, device, rtpCapabilities, sctpCapabilities}`` -> ``{peers, sessionToken}``.

``connectWebRtcTransport`` goes out lazily, on a transport's first produce or
consume, and this client awaits its response *before* aiortc starts ICE and
DTLS on that transport (pymediasoup itself would fire it and go on).

Reconnection (docs/protocol.md, "Reconnection and session resume"): when the
WebSocket drops without :meth:`SfuClient.close` and without a fatal signal,
and the server gave a ``sessionToken``, the client reconnects to the same URL
with exponential backoff and full jitter and sends ``resume`` first. Media
does not depend on the WebSocket: transports, producers and consumers live
on. If the session is gone (``resume`` answers 404 or 403, or
``reconnect_timeout`` passes) it starts over: closes its transports and
consumers, joins again and produces the same tracks again (new producer
ids). Fatal signals stop it: close code 4000 (replaced by a newer session),
4001 or ``serverShutdown`` (the server is going away), 4029 (a limit), HTTP
400 on the upgrade. Against a server that sends no ``sessionToken`` (or with
``auto_reconnect=False``) a dropped WebSocket closes the client, as before.
While reconnecting, :meth:`SfuClient.request` raises ``ConnectionError``.

Produced tracks are wrapped (each producer sends a forwarding track that
reads the application's track), so that the application's track outlives a
transport: aiortc stops the track a sender reads when the sender stops.

Events (pyee): ``newpeer(peer)``, ``peerclosed(peer_id)``,
``newconsumer(RemoteConsumer)``, ``consumerclosed(consumer_id)``,
``consumerpaused(consumer_id)``, ``consumerresumed(consumer_id)``,
``activespeaker(data)``, ``notification(method, data)`` for every other
notification, ``connectionstatechange(direction, state)`` for the
transports, and ``disconnected()`` when the WebSocket closes without
:meth:`SfuClient.close` (reconnection may follow). Also:

- ``reconnecting(attempt)``: before each reconnection attempt (1, 2, ...);
- ``reconnected(resumed)``: back in the room; ``resumed`` is True if the
  session was resumed (same producers and consumers, the server sends
  ``newConsumer`` for what was missed), False if it was joined afresh;
- ``producersreplaced({old_id: new_id})``: after a fresh join, the producers
  made again for the application's tracks (before ``reconnected(False)``);
- ``fatal(reason)``: the client stops (no more retries) and closes next;
- ``transportclosed(transport_id, reason)``: the server closed a transport;
- ``producerclosed(producer_id, reason)``: the server closed a producer (the
  local one is closed too).

Peers and consumers that vanished while the client was away get
``peerclosed`` and ``consumerclosed`` when it comes back.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import random
import secrets
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCIceServer
from aiortc.mediastreams import MediaStreamError
from av.frame import Frame
from av.packet import Packet
from pyee.asyncio import AsyncIOEventEmitter
from pymediasoup import Device
from pymediasoup.handlers.aiortc_handler import AiortcHandler
from pymediasoup.models.transport import DtlsParameters, IceCandidate, IceParameters
from pymediasoup.rtp_parameters import RtpCapabilities, RtpParameters
from pymediasoup.sctp_parameters import SctpParameters
from yarl import URL

from sfu.aiortc_adapter import (
    disable_media_section_recycling,
    route_rtx_to_receiver,
    set_host_addresses,
)
from sfu.client.protoo import ProtooConnection, ProtooError

__all__ = ["RemoteConsumer", "SfuClient", "default_device_info"]

logger = logging.getLogger(__name__)

# WebSocket close codes (docs/protocol.md, "Fatal and transient failures").
CLOSE_REPLACED = 4000
CLOSE_SHUTDOWN = 4001
CLOSE_MEDIA_LOST = 4002  # transient: the peer was removed, join again
CLOSE_LIMIT = 4029
_FATAL_CLOSE_CODES = {
    CLOSE_REPLACED: "replaced by a newer session with the same peerId",
    CLOSE_SHUTDOWN: "the server is shutting down",
    CLOSE_LIMIT: "the server or the room is at a limit",
}
# Errors of a connection attempt or a request that are worth another try.
_TRANSIENT_ERRORS = (ConnectionError, TimeoutError, OSError, aiohttp.ClientError)


def default_device_info() -> dict[str, str]:
    """The ``device`` object sent in ``join`` (mediasoup-demo sends {flag, name, version})."""
    try:
        version = importlib.metadata.version("pymediasoup")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    return {"flag": "python", "name": "pymediasoup", "version": version}


def _dump(model: Any) -> Any:
    """A pymediasoup pydantic model as the plain camelCase JSON object mediasoup expects."""
    if model is None:
        return None
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def _ice_servers(servers: Any) -> list[RTCIceServer]:
    """RTCIceServer objects from a createWebRtcTransport reply's ``iceServers``."""
    result = []
    for server in servers if isinstance(servers, list) else []:
        if isinstance(server, dict) and server.get("urls"):
            result.append(
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
    return result


@dataclass(eq=False)
class RemoteConsumer:
    """A consumed remote producer: its aiortc track and its pymediasoup Consumer."""

    id: str
    producer_id: str
    peer_id: str | None
    kind: str
    track: MediaStreamTrack
    consumer: Any  # pymediasoup.consumer.Consumer
    app_data: dict[str, Any] = field(default_factory=dict)
    type: str = "simple"
    rtp_parameters: dict[str, Any] = field(default_factory=dict)
    # Paused by us (pause_consumer).
    locally_paused: bool = False
    # Paused by the server: producerPaused at creation, consumerPaused/consumerResumed.
    remotely_paused: bool = False
    closed: bool = False

    @property
    def paused(self) -> bool:
        return self.locally_paused or self.remotely_paused


@dataclass
class _PendingConsumer:
    """Notifications that arrive while a newConsumer is still being set up."""

    closed: bool = False
    paused: bool | None = None


@dataclass(eq=False)
class _Produced:
    """What the application produced, to produce it again after a fresh join."""

    source: MediaStreamTrack
    app_data: dict[str, Any]
    stop_track: bool
    paused: bool = False


class _ForwardingTrack(MediaStreamTrack):
    """What a producer sends: the frames of the application's track.

    aiortc stops the track its sender reads when the sender stops (a closed
    transport); this one absorbs that, so the application's track can be
    produced again on a new transport. ``enabled`` (pymediasoup's pause and
    resume toggle it) is the application track's.
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source

    @property
    def enabled(self) -> bool:
        return bool(getattr(self.source, "enabled", True))

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if hasattr(self.source, "enabled"):
            self.source.enabled = value

    async def recv(self) -> Frame | Packet:
        if self.readyState != "live" or self.source.readyState != "live":
            raise MediaStreamError
        return await self.source.recv()


class _Fatal(Exception):
    """Stop reconnecting; the message is the reason for the ``fatal`` event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SfuClient(AsyncIOEventEmitter):
    """A room participant: produce tracks, consume everybody else's.

    ``auto_reconnect``: resume the session when the WebSocket drops (see the
    module docstring). Attempts wait ``random.uniform(0, min(reconnect_max_delay,
    reconnect_initial_delay * 2 ** (attempt - 1)))`` seconds; after
    ``reconnect_timeout`` seconds without a resume the client joins afresh,
    up to ``rejoin_attempts`` times, then gives up (``fatal``).
    ``heartbeat``: WebSocket ping interval in seconds (None: off), so that a
    silently dead network is noticed.
    """

    def __init__(
        self,
        url: str,
        room_id: str,
        peer_id: str | None = None,
        *,
        display_name: str = "bot",
        device: dict[str, Any] | None = None,
        ice_addresses: Sequence[str] | None = None,
        produce: bool = True,
        consume: bool = True,
        ssl: Any = True,
        request_timeout: float = 10.0,
        auto_reconnect: bool = True,
        reconnect_initial_delay: float = 0.25,
        reconnect_max_delay: float = 4.0,
        reconnect_timeout: float = 10.0,
        rejoin_attempts: int = 3,
        heartbeat: float | None = 15.0,
    ) -> None:
        super().__init__()
        if reconnect_initial_delay < 0 or reconnect_max_delay < 0 or reconnect_timeout < 0:
            raise ValueError("reconnection delays and timeout must not be negative")
        if rejoin_attempts < 1:
            raise ValueError("rejoin_attempts must be at least 1")
        self.url = url
        self.room_id = room_id
        self.peer_id = peer_id if peer_id is not None else secrets.token_hex(4)
        self.display_name = display_name
        self.device_info = dict(device) if device is not None else default_device_info()
        self.ice_addresses = list(ice_addresses) if ice_addresses is not None else None
        self.produce_enabled = produce
        self.consume_enabled = consume
        self.request_timeout = request_timeout
        self.auto_reconnect = auto_reconnect
        self.reconnect_initial_delay = reconnect_initial_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.reconnect_timeout = reconnect_timeout
        self.rejoin_attempts = rejoin_attempts
        self.heartbeat = heartbeat
        self._ssl = ssl

        self.peers: dict[str, dict[str, Any]] = {}
        self.consumers: dict[str, RemoteConsumer] = {}
        # pymediasoup Producers by id.
        self.producers: dict[str, Any] = {}
        self.router_rtp_capabilities: dict[str, Any] | None = None
        self.device: Any = None  # pymediasoup Device
        self.send_transport: Any = None  # pymediasoup Transport
        self.recv_transport: Any = None
        self.joined = False
        # From the join reply: what `resume` needs (None: the server cannot resume).
        self.session_token: str | None = None
        # Why the client gave up (see the `fatal` event), if it did.
        self.fatal_reason: str | None = None

        self._protoo: ProtooConnection | None = None
        # A connection the reconnection opened and has not adopted yet.
        self._candidate: ProtooConnection | None = None
        self._join_called = False
        self._closed = False
        self._reconnecting = False
        self._attempt = 0
        self._shutdown_reason: str | None = None
        # By producer id: the application's track and how it was produced.
        self._produced: dict[str, _Produced] = {}
        # pymediasoup does not queue handler operations (mediasoup-client does):
        # each aiortc RTCPeerConnection renegotiates one operation at a time.
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self._pending_consumers: dict[str, _PendingConsumer] = {}
        self._consumers_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- properties ----------------------------------------------------------

    @property
    def protoo(self) -> ProtooConnection:
        if self._protoo is None:
            raise RuntimeError("not connected: call join() first")
        return self._protoo

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def reconnecting(self) -> bool:
        """True from a transient WebSocket loss until ``reconnected`` or ``fatal``."""
        return self._reconnecting

    @property
    def protoo_url(self) -> str:
        url = URL(self.url)
        if not url.path:
            url = url.with_path("/")
        return str(url.update_query(roomId=self.room_id, peerId=self.peer_id))

    # --- joining -------------------------------------------------------------

    async def join(self) -> list[dict[str, Any]]:
        """Connect, create the transports, ``join``; return the peers already in the room."""
        if self._join_called:
            raise RuntimeError("join() was already called")
        if self._closed:
            raise RuntimeError("client closed")
        self._join_called = True
        if self.ice_addresses is not None:
            set_host_addresses(self.ice_addresses)

        try:
            self._protoo = await self._connect(None)
            response = await self._join()
        except BaseException:
            await self.close()
            raise

        peers = _peer_list(response.get("peers"))
        for peer in peers:
            # Keep a newPeer that raced ahead of the join response.
            self.peers.setdefault(peer["id"], peer)
        self.joined = True
        return peers

    async def _connect(self, previous: ProtooConnection | None) -> ProtooConnection:
        """Open a protoo connection with this client's handlers (or ``previous``'s)."""
        protoo = await ProtooConnection.connect(
            self.protoo_url, timeout=self.request_timeout, ssl=self._ssl, heartbeat=self.heartbeat
        )
        # Handlers go in before the first request: newConsumer and newPeer may
        # arrive before the join (or resume) response.
        if previous is not None:
            protoo.copy_handlers_from(previous)
        else:
            self._install_handlers(protoo)
        protoo.on_close(lambda: self._on_protoo_closed(protoo))
        return protoo

    def _install_handlers(self, protoo: ProtooConnection) -> None:
        protoo.on_request("newConsumer", self._on_new_consumer)
        protoo.on_request("newDataConsumer", self._on_new_data_consumer)
        protoo.on_notification("newPeer", self._on_new_peer)
        protoo.on_notification("peerClosed", self._on_peer_closed)
        protoo.on_notification("peerDisplayNameChanged", self._on_peer_display_name_changed)
        protoo.on_notification("consumerClosed", self._on_consumer_closed)
        protoo.on_notification("consumerPaused", self._on_consumer_paused)
        protoo.on_notification("consumerResumed", self._on_consumer_resumed)
        protoo.on_notification("activeSpeaker", self._on_active_speaker)
        protoo.on_notification("serverShutdown", self._on_server_shutdown)
        protoo.on_notification("transportClosed", self._on_transport_closed)
        protoo.on_notification("producerClosed", self._on_producer_closed)
        protoo.on_any_notification(self._on_other_notification)

    async def _join(self) -> dict[str, Any]:
        """Capabilities, transports and ``join`` on the current connection; the join reply."""
        caps = await self.request("getRouterRtpCapabilities")
        self.router_rtp_capabilities = caps
        self.device = Device(handlerFactory=AiortcHandler.createFactory(tracks=[]))
        await self.device.load(routerRtpCapabilities=RtpCapabilities.model_validate(caps))

        if self.produce_enabled:
            info = await self.request(
                "createWebRtcTransport",
                {
                    "forceTcp": False,
                    "producing": True,
                    "consuming": False,
                    "sctpCapabilities": None,
                },
            )
            self.send_transport = self._create_transport("send", info)
        if self.consume_enabled:
            info = await self.request(
                "createWebRtcTransport",
                {
                    "forceTcp": False,
                    "producing": False,
                    "consuming": True,
                    "sctpCapabilities": None,
                },
            )
            self.recv_transport = self._create_transport("recv", info)

        join_data: dict[str, Any] = {
            "displayName": self.display_name,
            "device": self.device_info,
            "sctpCapabilities": _dump(self.device.sctpCapabilities),
        }
        # mediasoup-demo sends no rtpCapabilities when it does not consume.
        if self.consume_enabled:
            join_data["rtpCapabilities"] = _dump(self.device.rtpCapabilities)
        response = await self.request("join", join_data)
        token = response.get("sessionToken")
        self.session_token = token if isinstance(token, str) and token else None
        return response

    def _create_transport(self, direction: str, info: Mapping[str, Any]) -> Any:
        candidates = []
        for candidate in info["iceCandidates"]:
            candidate = dict(candidate)
            # pymediasoup reads `ip`; newer mediasoup sends only `address`.
            if "ip" not in candidate and "address" in candidate:
                candidate["ip"] = candidate["address"]
            candidates.append(IceCandidate.model_validate(candidate))
        sctp = info.get("sctpParameters")
        kwargs = {
            "id": info["id"],
            "iceParameters": IceParameters.model_validate(info["iceParameters"]),
            "iceCandidates": candidates,
            "dtlsParameters": DtlsParameters.model_validate(info["dtlsParameters"]),
            "sctpParameters": SctpParameters.model_validate(sctp) if sctp else None,
            # The server's STUN/TURN servers, if any; never the public STUN
            # server aiortc uses when given none.
            "iceServers": _ice_servers(info.get("iceServers")),
        }
        if direction == "send":
            transport = self.device.createSendTransport(**kwargs)
        else:
            transport = self.device.createRecvTransport(**kwargs)
            # Peers come and go: never recycle a closed m-section (see aiortc_adapter).
            disable_media_section_recycling(transport.handler)
        transport_id: str = transport.id

        async def on_connect(dtls_parameters: Any) -> None:
            await self.request(
                "connectWebRtcTransport",
                {"transportId": transport_id, "dtlsParameters": _dump(dtls_parameters)},
            )

        # The handler awaits its "@connect" listeners before it applies the
        # local description (which starts ICE and DTLS); the transport's own
        # "connect" event is fire-and-forget, so the request hangs here and
        # a failure fails the produce()/consume() that triggered it.
        transport.handler.on("@connect", on_connect)
        # pymediasoup refuses to produce/consume without a "connect" listener.
        transport.on("connect", _ignore)

        if direction == "send":

            async def on_produce(kind: str, rtp_parameters: Any, app_data: Any) -> str:
                response = await self.request(
                    "produce",
                    {
                        "transportId": transport_id,
                        "kind": kind,
                        "rtpParameters": _dump(rtp_parameters),
                        "appData": app_data if app_data is not None else {},
                    },
                )
                producer_id = response.get("id")
                if not isinstance(producer_id, str):
                    raise ProtooError(500, f"produce response without an id: {response!r}")
                return producer_id

            transport.on("produce", on_produce)

        def on_state(state: str) -> None:
            self._fire("connectionstatechange", direction, state)

        transport.on("connectionstatechange", on_state)
        return transport

    # --- requests ------------------------------------------------------------

    async def request(
        self,
        method: str,
        data: Mapping[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Send a protoo request; raise :class:`ProtooError` on an error response.

        Raises ``ConnectionError`` while the WebSocket is down (reconnecting).
        """
        return await self.protoo.request(
            method, data, timeout=self.request_timeout if timeout is None else timeout
        )

    async def restart_ice(self) -> dict[str, dict[str, Any]]:
        """``restartIce`` for each transport, and hand the new ICE parameters to pymediasoup.

        Returns the new ``iceParameters`` by transport id. aiortc keeps the
        ICE credentials it started with; the server keeps those valid, so
        media goes on. Producers and consumers stay.
        """
        result: dict[str, dict[str, Any]] = {}
        for transport, lock in (
            (self.send_transport, self._send_lock),
            (self.recv_transport, self._recv_lock),
        ):
            if transport is None or transport.closed:
                continue
            ice_parameters = await self.request("restartIce", {"transportId": transport.id})
            async with lock:
                await transport.restartIce(
                    iceParameters=IceParameters.model_validate(ice_parameters)
                )
            result[transport.id] = ice_parameters
        return result

    # --- producing -----------------------------------------------------------

    async def produce(
        self,
        track: MediaStreamTrack,
        app_data: dict[str, Any] | None = None,
        *,
        stop_track: bool = True,
    ) -> str:
        """Send ``track``; return the server's producer id.

        With ``stop_track`` (the default) the track is stopped when the
        producer closes (not when a fresh join produces it again). The
        pymediasoup Producer sends a forwarding track that reads ``track``.
        """
        if self.send_transport is None:
            raise RuntimeError("no send transport (not joined, or produce=False)")
        record = _Produced(track, dict(app_data) if app_data is not None else {}, stop_track)
        return await self._produce(record)

    async def _produce(self, record: _Produced) -> str:
        transport = self.send_transport
        if transport is None:
            raise RuntimeError("no send transport")
        async with self._send_lock:
            producer = await transport.produce(
                track=_ForwardingTrack(record.source),
                appData=dict(record.app_data),
                stopTracks=True,  # the forwarding track
            )
        producer_id: str = producer.id
        self.producers[producer_id] = producer
        self._produced[producer_id] = record
        if record.paused:
            await self.pause_producer(producer_id)
        return producer_id

    def _producer(self, producer_id: str) -> Any:
        try:
            return self.producers[producer_id]
        except KeyError:
            raise KeyError(f"unknown producer {producer_id!r}") from None

    async def pause_producer(self, producer_id: str) -> None:
        self._producer(producer_id).pause()
        record = self._produced.get(producer_id)
        if record is not None:
            record.paused = True
        await self.request("pauseProducer", {"producerId": producer_id})

    async def resume_producer(self, producer_id: str) -> None:
        self._producer(producer_id).resume()
        record = self._produced.get(producer_id)
        if record is not None:
            record.paused = False
        await self.request("resumeProducer", {"producerId": producer_id})

    async def close_producer(self, producer_id: str) -> None:
        producer = self._producer(producer_id)
        del self.producers[producer_id]
        await self._close_local_producer(producer, self._produced.pop(producer_id, None))
        await self.request("closeProducer", {"producerId": producer_id})

    async def _close_local_producer(self, producer: Any, record: _Produced | None) -> None:
        if producer is not None:
            async with self._send_lock:
                try:
                    await producer.close()
                except Exception:
                    logger.exception("closing producer %s failed", producer.id)
        if record is not None and record.stop_track:
            record.source.stop()

    # --- consuming -----------------------------------------------------------

    def _consumer(self, consumer_id: str) -> RemoteConsumer:
        try:
            return self.consumers[consumer_id]
        except KeyError:
            raise KeyError(f"unknown consumer {consumer_id!r}") from None

    async def pause_consumer(self, consumer_id: str) -> None:
        remote = self._consumer(consumer_id)
        remote.locally_paused = True
        remote.consumer.pause()
        await self.request("pauseConsumer", {"consumerId": consumer_id})

    async def resume_consumer(self, consumer_id: str) -> None:
        remote = self._consumer(consumer_id)
        remote.locally_paused = False
        remote.consumer.resume()
        await self.request("resumeConsumer", {"consumerId": consumer_id})

    async def wait_for_consumers(
        self,
        count: int,
        *,
        kind: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> bool:
        """Wait until at least ``count`` consumers (of ``kind``, if given) exist."""

        def enough() -> bool:
            return (
                sum(1 for c in self.consumers.values() if kind is None or c.kind == kind) >= count
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not enough():
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closed:
                return enough()
            event = self._consumers_changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return enough()
        return True

    def _consumers_did_change(self) -> None:
        self._consumers_changed.set()
        self._consumers_changed = asyncio.Event()

    async def _on_new_consumer(self, data: dict[str, Any]) -> dict[str, Any]:
        if not self.consume_enabled or self.recv_transport is None:
            raise ProtooError(403, "I do not want to consume")
        consumer_id = data.get("id", data.get("consumerId"))
        producer_id = data.get("producerId")
        kind = data.get("kind")
        rtp_parameters = data.get("rtpParameters")
        if not isinstance(consumer_id, str) or not isinstance(producer_id, str):
            raise ProtooError(400, "newConsumer: id and producerId must be strings")
        if kind not in ("audio", "video"):
            raise ProtooError(400, f"newConsumer: bad kind {kind!r}")
        if not isinstance(rtp_parameters, dict):
            raise ProtooError(400, "newConsumer: rtpParameters must be an object")
        if consumer_id in self.consumers or consumer_id in self._pending_consumers:
            raise ProtooError(409, f"consumer {consumer_id!r} already exists")

        pending = _PendingConsumer()
        self._pending_consumers[consumer_id] = pending
        # In a task of the client's own: if the WebSocket drops meanwhile, the
        # connection cancels this handler, but a consume cut in half would
        # leave pymediasoup's and aiortc's state inconsistent.
        task = self._spawn(
            self._set_up_consumer(consumer_id, producer_id, kind, rtp_parameters, data, pending)
        )
        remote = await asyncio.shield(task)
        if remote is not None:
            # Sent after our answer: the send lock keeps frames in order and
            # this task cannot run before the answer is queued.
            self._spawn(self._resume_on_server(remote))
        return {}

    async def _set_up_consumer(
        self,
        consumer_id: str,
        producer_id: str,
        kind: str,
        rtp_parameters: dict[str, Any],
        data: dict[str, Any],
        pending: _PendingConsumer,
    ) -> RemoteConsumer | None:
        peer_id = data.get("peerId")
        app_data = data.get("appData")
        if not isinstance(app_data, dict):
            app_data = {}
        try:
            async with self._recv_lock:
                transport = self.recv_transport
                if transport is None or transport.closed:
                    raise ProtooError(409, "no receive transport")
                consumer = await transport.consume(
                    id=consumer_id,
                    producerId=producer_id,
                    kind=kind,
                    rtpParameters=RtpParameters.model_validate(rtp_parameters),
                    appData={**app_data, "peerId": peer_id},
                )
        finally:
            self._pending_consumers.pop(consumer_id, None)
        self._route_rtx(transport, rtp_parameters)

        remote = RemoteConsumer(
            id=consumer_id,
            producer_id=producer_id,
            peer_id=peer_id if isinstance(peer_id, str) else None,
            kind=kind,
            track=consumer.track,
            consumer=consumer,
            app_data=app_data,
            type=str(data.get("type", "simple")),
            rtp_parameters=rtp_parameters,
            remotely_paused=bool(data.get("producerPaused", False)),
        )
        if pending.closed or transport is not self.recv_transport:
            # consumerClosed arrived while we were setting it up (or the
            # client started over meanwhile).
            remote.closed = True
            self._spawn(self._close_local_consumer(remote))
            return None
        if pending.paused is not None:
            remote.remotely_paused = pending.paused

        self.consumers[consumer_id] = remote
        consumer.on("transportclose", lambda: self._forget_consumer(consumer_id))
        self._fire("newconsumer", remote)
        self._consumers_did_change()
        return remote

    def _route_rtx(self, transport: Any, rtp_parameters: Mapping[str, Any]) -> None:
        """Work around aiortc dropping RTX with several video receivers (see aiortc_adapter)."""
        rtx_ssrc = ((rtp_parameters.get("encodings") or [{}])[0].get("rtx") or {}).get("ssrc")
        mid = rtp_parameters.get("mid")
        if not isinstance(rtx_ssrc, int) or mid is None:
            return
        for transceiver in transport.handler.pc.getTransceivers():
            if transceiver.mid == mid:
                route_rtx_to_receiver(transceiver.receiver, rtx_ssrc)

    async def _on_new_data_consumer(self, data: dict[str, Any]) -> dict[str, Any]:
        raise ProtooError(403, "I do not want DataChannels")

    async def _resume_on_server(self, remote: RemoteConsumer) -> None:
        """mediasoup-demo's client resumes each new consumer; the server makes it idempotent."""
        if remote.locally_paused or remote.closed:
            return
        try:
            await self.request("resumeConsumer", {"consumerId": remote.id})
        except (TimeoutError, ProtooError, ConnectionError) as exc:
            logger.debug("resumeConsumer %s failed: %s", remote.id, exc)

    def _forget_consumer(self, consumer_id: str) -> None:
        remote = self.consumers.pop(consumer_id, None)
        if remote is not None:
            remote.closed = True
            self._consumers_did_change()

    async def _close_local_consumer(self, remote: RemoteConsumer) -> None:
        async with self._recv_lock:
            try:
                await remote.consumer.close()
            except Exception:
                logger.exception("closing consumer %s failed", remote.id)

    # --- notifications -------------------------------------------------------

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
        self._fire("newpeer", normalized)

    def _on_peer_closed(self, data: dict[str, Any]) -> None:
        peer_id = data.get("peerId")
        if not isinstance(peer_id, str):
            return
        self.peers.pop(peer_id, None)
        self._fire("peerclosed", peer_id)

    def _on_peer_display_name_changed(self, data: dict[str, Any]) -> None:
        peer = self.peers.get(data.get("peerId"))  # type: ignore[arg-type]
        if peer is not None and isinstance(data.get("displayName"), str):
            peer["displayName"] = data["displayName"]
        self._fire("notification", "peerDisplayNameChanged", data)

    def _on_consumer_closed(self, data: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        consumer_id = data.get("consumerId")
        if not isinstance(consumer_id, str):
            return None
        return self._consumer_gone(consumer_id)

    def _consumer_gone(self, consumer_id: str) -> Coroutine[Any, Any, None] | None:
        """The server closed this consumer: close it here, then emit ``consumerclosed``."""
        pending = self._pending_consumers.get(consumer_id)
        if pending is not None:
            pending.closed = True
            return None
        remote = self.consumers.pop(consumer_id, None)
        if remote is None:
            return None
        remote.closed = True
        self._consumers_did_change()
        return self._close_and_report(remote)

    async def _close_and_report(self, remote: RemoteConsumer) -> None:
        await self._close_local_consumer(remote)
        self._fire("consumerclosed", remote.id)

    def _set_remotely_paused(self, data: dict[str, Any], paused: bool) -> None:
        consumer_id = data.get("consumerId")
        if not isinstance(consumer_id, str):
            return
        pending = self._pending_consumers.get(consumer_id)
        if pending is not None:
            pending.paused = paused
            return
        remote = self.consumers.get(consumer_id)
        if remote is None:
            return
        remote.remotely_paused = paused
        self._fire("consumerpaused" if paused else "consumerresumed", consumer_id)

    def _on_consumer_paused(self, data: dict[str, Any]) -> None:
        self._set_remotely_paused(data, True)

    def _on_consumer_resumed(self, data: dict[str, Any]) -> None:
        self._set_remotely_paused(data, False)

    def _on_active_speaker(self, data: dict[str, Any]) -> None:
        self._fire("activespeaker", data)

    def _on_server_shutdown(self, data: dict[str, Any]) -> None:
        # The connection closes next (4001); that makes it fatal.
        reason = data.get("reason")
        self._shutdown_reason = (
            reason if isinstance(reason, str) and reason else (_FATAL_CLOSE_CODES[CLOSE_SHUTDOWN])
        )
        logger.info("peer %s: server shutdown: %s", self.peer_id, self._shutdown_reason)

    def _on_transport_closed(self, data: dict[str, Any]) -> None:
        transport_id = data.get("transportId")
        if isinstance(transport_id, str):
            self._fire("transportclosed", transport_id, str(data.get("reason", "")))

    def _on_producer_closed(self, data: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        producer_id = data.get("producerId")
        if not isinstance(producer_id, str):
            return None
        return self._producer_gone(producer_id, str(data.get("reason", "")))

    def _producer_gone(self, producer_id: str, reason: str) -> Coroutine[Any, Any, None] | None:
        """The server closed this producer: close it here, then emit ``producerclosed``."""
        producer = self.producers.pop(producer_id, None)
        record = self._produced.pop(producer_id, None)
        if producer is None and record is None:
            return None

        async def close_and_report() -> None:
            await self._close_local_producer(producer, record)
            self._fire("producerclosed", producer_id, reason)

        return close_and_report()

    def _on_other_notification(self, method: str, data: dict[str, Any]) -> None:
        self._fire("notification", method, data)

    # --- reconnection ----------------------------------------------------------

    def _on_protoo_closed(self, protoo: ProtooConnection) -> None:
        if self._closed or protoo is not self._protoo or self._reconnecting:
            return  # closed by us, an old connection, or the reconnection handles it
        fatal = self._fatal_reason(protoo)
        reconnect = (
            fatal is None and self.auto_reconnect and self.joined and self.session_token is not None
        )
        self._reconnecting = reconnect
        logger.info(
            "peer %s: signaling connection lost (close code %s%s)",
            self.peer_id,
            protoo.close_code,
            f", fatal: {fatal}" if fatal else ", reconnecting" if reconnect else "",
        )
        self._fire("disconnected")
        if fatal is not None:
            self._spawn(self._fail(fatal))
        elif reconnect:
            self._spawn(self._reconnect(protoo))
        else:
            self._spawn(self.close())

    def _fatal_reason(self, protoo: ProtooConnection) -> str | None:
        """Why retrying is pointless, if it is (docs/protocol.md)."""
        if self._shutdown_reason is not None:
            return self._shutdown_reason
        code = protoo.close_code
        if code in _FATAL_CLOSE_CODES:
            return protoo.close_reason or _FATAL_CLOSE_CODES[code]
        return None

    def _raise_if_fatal(self, protoo: ProtooConnection | None) -> None:
        reason = self._fatal_reason(protoo) if protoo is not None else self._shutdown_reason
        if reason is not None:
            raise _Fatal(reason)

    async def _reconnect(self, lost: ProtooConnection) -> None:
        """Resume the session, or else join afresh; ``fatal`` if neither works."""
        started = asyncio.get_running_loop().time()
        self._attempt = 0
        try:
            protoo: ProtooConnection | None = None
            resumed = False
            if lost.close_code != CLOSE_MEDIA_LOST:  # the server removed us: nothing to resume
                resumed, protoo = await self._resume_session(lost, started + self.reconnect_timeout)
            if not resumed:
                await self._join_afresh(lost, protoo)
        except _Fatal as exc:
            self._reconnecting = False
            await self._fail(exc.reason)
            return
        except Exception as exc:
            logger.exception("peer %s: reconnection failed", self.peer_id)
            self._reconnecting = False
            await self._fail(f"reconnection failed: {exc!r}")
            return
        self._reconnecting = False
        logger.info(
            "peer %s: %s after %.0f ms",
            self.peer_id,
            "resumed" if resumed else "joined again",
            (asyncio.get_running_loop().time() - started) * 1000,
        )
        self._fire("reconnected", resumed)
        if self._protoo is not None and self._protoo.closed:
            self._on_protoo_closed(self._protoo)  # lost again meanwhile

    async def _next_attempt(self, deadline: float | None = None) -> None:
        """Emit ``reconnecting(attempt)``, then wait the attempt's backoff (full jitter)."""
        self._attempt += 1
        self._fire("reconnecting", self._attempt)
        cap = self.reconnect_initial_delay * 2 ** min(self._attempt - 1, 30)
        delay = random.uniform(0, min(self.reconnect_max_delay, cap))
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - asyncio.get_running_loop().time()))
        await asyncio.sleep(delay)

    async def _open_candidate(self, lost: ProtooConnection) -> ProtooConnection:
        try:
            protoo = await self._connect(lost)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 400:
                raise _Fatal(f"the server refused the WebSocket: HTTP 400 {exc.message}") from exc
            raise
        self._candidate = protoo
        return protoo

    async def _drop_candidate(self, protoo: ProtooConnection) -> None:
        """Close a connection the reconnection gave up on (its close is not reported)."""
        if self._candidate is protoo:
            self._candidate = None
        await protoo.close()

    async def _resume_session(
        self, lost: ProtooConnection, deadline: float
    ) -> tuple[bool, ProtooConnection | None]:
        """Try ``resume`` until ``deadline``.

        Returns (True, connection) once resumed, (False, connection) when the
        server says the session is gone (join afresh on that connection), and
        (False, None) at the deadline.
        """
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await self._next_attempt(deadline)
            try:
                protoo = await self._open_candidate(lost)
            except _TRANSIENT_ERRORS as exc:
                logger.info(
                    "peer %s: reconnection attempt %d failed: %r", self.peer_id, self._attempt, exc
                )
                continue
            before_peers = set(self.peers)
            before_consumers = set(self.consumers) | set(self._pending_consumers)
            try:
                reply = await protoo.request(
                    "resume",
                    {"sessionToken": self.session_token},
                    timeout=max(1.0, min(self.request_timeout, deadline - loop.time())),
                )
            except ProtooError as exc:
                # 409 ("resume must be the first request"): the server took
                # this connection for a new peer, so there is no session either.
                if exc.code in (403, 404, 409):
                    logger.info("peer %s: cannot resume (%s): joining afresh", self.peer_id, exc)
                    return False, protoo
                logger.info("peer %s: resume failed: %s", self.peer_id, exc)
                await self._drop_candidate(protoo)
                continue
            except _TRANSIENT_ERRORS as exc:
                self._raise_if_fatal(protoo)  # e.g. closed with 4029 or 4001
                await self._drop_candidate(protoo)
                logger.info("peer %s: resume failed: %r", self.peer_id, exc)
                continue
            self._candidate = None
            self._protoo = protoo
            await self._reconcile(reply, before_peers, before_consumers)
            return True, protoo
        return False, None

    async def _reconcile(
        self, reply: dict[str, Any], before_peers: set[str], before_consumers: set[str]
    ) -> None:
        """Forget what vanished while we were away (the server lists what lives on)."""
        closing: list[Coroutine[Any, Any, None]] = []
        listed = {
            c["id"]: c for c in reply.get("consumers") or [] if isinstance(c, dict) and "id" in c
        }
        for consumer_id in before_consumers - listed.keys():
            coroutine = self._consumer_gone(consumer_id)
            if coroutine is not None:
                closing.append(coroutine)
        for consumer_id, info in listed.items():
            remote = self.consumers.get(consumer_id)
            producer_paused = info.get("producerPaused")
            if (
                remote is not None
                and isinstance(producer_paused, bool)
                and producer_paused != remote.remotely_paused
            ):
                self._set_remotely_paused({"consumerId": consumer_id}, producer_paused)

        producers = {p.get("id") for p in reply.get("producers") or [] if isinstance(p, dict)}
        for producer_id in set(self.producers) - producers:
            coroutine = self._producer_gone(producer_id, "closed while disconnected")
            if coroutine is not None:
                closing.append(coroutine)
        # Closed (and reported) before ``reconnected``; peers after their consumers.
        await asyncio.gather(*closing, return_exceptions=True)
        self._reconcile_peers(reply.get("peers"), before_peers)

        transports = {t.get("id"): t for t in reply.get("transports") or [] if isinstance(t, dict)}
        for transport in (self.send_transport, self.recv_transport):
            if transport is not None and transport.id not in transports:
                self._fire("transportclosed", transport.id, "closed while disconnected")
        if any(t.get("iceState") in ("disconnected", "failed") for t in transports.values()):
            self._spawn(self._restart_ice_quietly())

    def _reconcile_peers(self, listed: Any, before: set[str]) -> None:
        peers = {peer["id"]: peer for peer in _peer_list(listed)}
        for peer_id in before - peers.keys():
            if self.peers.pop(peer_id, None) is not None:
                self._fire("peerclosed", peer_id)
        for peer_id, peer in peers.items():
            if peer_id not in self.peers:
                self.peers[peer_id] = peer
                self._fire("newpeer", peer)

    async def _restart_ice_quietly(self) -> None:
        try:
            await self.restart_ice()
        except Exception as exc:
            logger.info("peer %s: restartIce after resume failed: %r", self.peer_id, exc)

    async def _join_afresh(self, lost: ProtooConnection, protoo: ProtooConnection | None) -> None:
        """Drop the old transports and consumers, join again, produce the same tracks again."""
        await self._drop_media()
        # Producer ids change: current id -> the id the application knows.
        original = {producer_id: producer_id for producer_id in self._produced}
        failures = 0
        while True:
            if protoo is None:
                if failures >= self.rejoin_attempts:
                    raise _Fatal(f"could not join again after {failures} attempts")
                await self._next_attempt()
                try:
                    protoo = await self._open_candidate(lost)
                except _TRANSIENT_ERRORS as exc:
                    failures += 1
                    logger.info("peer %s: join attempt failed: %r", self.peer_id, exc)
                    continue
            try:
                await self._join_and_produce(protoo, original)
                self._candidate = None
                return
            except ProtooError as exc:
                if exc.code == 429:
                    raise _Fatal(exc.reason) from exc
                logger.info("peer %s: join again failed: %s", self.peer_id, exc)
            except _TRANSIENT_ERRORS as exc:
                self._raise_if_fatal(protoo)
                logger.info("peer %s: join again failed: %r", self.peer_id, exc)
            failures += 1
            await self._drop_candidate(protoo)
            await self._drop_media()
            protoo = None

    async def _join_and_produce(self, protoo: ProtooConnection, original: dict[str, str]) -> None:
        self._protoo = protoo  # the transports' callbacks send on it
        before_peers = set(self.peers)
        response = await self._join()
        self._reconcile_peers(response.get("peers"), before_peers)
        self.joined = True
        for old_id, record in list(self._produced.items()):
            reason = "its track ended" if record.source.readyState != "live" else None
            if reason is None:
                try:
                    new_id = await self._produce(record)
                except ProtooError as exc:
                    if exc.code == 429:
                        raise
                    reason = f"cannot produce again: {exc.reason}"
            self._produced.pop(old_id, None)
            if reason is not None:
                # It is gone.
                if record.stop_track:
                    record.source.stop()
                self._fire("producerclosed", original.pop(old_id, old_id), reason)
                continue
            original[new_id] = original.pop(old_id, old_id)
        replaced = {first: current for current, first in original.items()}
        self._fire("producersreplaced", replaced)

    async def _drop_media(self) -> None:
        """Close the transports (and with them producers and consumers) locally; keep the tracks."""
        self.joined = False
        for pending in self._pending_consumers.values():
            pending.closed = True
        consumers = list(self.consumers.values())
        self.consumers.clear()
        for remote in consumers:
            remote.closed = True
        self._consumers_did_change()
        self.producers.clear()
        for attribute, lock in (
            ("send_transport", self._send_lock),
            ("recv_transport", self._recv_lock),
        ):
            transport = getattr(self, attribute)
            setattr(self, attribute, None)
            if transport is None:
                continue
            async with lock:
                try:
                    await transport.close()
                except Exception:
                    logger.exception("closing transport %s failed", transport.id)
        for remote in consumers:
            self._fire("consumerclosed", remote.id)

    async def _fail(self, reason: str) -> None:
        if self._closed:
            return
        self.fatal_reason = reason
        logger.warning("peer %s: giving up: %s", self.peer_id, reason)
        self._fire("fatal", reason)
        await self.close()

    def _drop_connection_for_test(self) -> None:
        """Drop the WebSocket's TCP connection without a close frame, as a network failure would."""
        self.protoo.abort()

    # --- closing -------------------------------------------------------------

    async def close(self) -> None:
        """Close the signaling connection, the transports, producers and consumers."""
        if self._closed:
            return
        self._closed = True
        self._reconnecting = False
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        for protoo in (self._candidate, self._protoo):
            if protoo is not None:
                await protoo.close()
        for remote in self.consumers.values():
            remote.closed = True
        self.consumers.clear()
        self.producers.clear()
        self._consumers_did_change()
        # Closing a transport closes its producers and consumers (and their tracks).
        for transport in (self.send_transport, self.recv_transport):
            if transport is not None:
                try:
                    await transport.close()
                except Exception:
                    logger.exception("closing transport %s failed", transport.id)
        records = list(self._produced.values())
        self._produced.clear()
        for record in records:
            if record.stop_track:
                record.source.stop()

    async def __aenter__(self) -> SfuClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _fire(self, event: str, *args: Any) -> None:
        """Emit to the application; its failures are logged, never fed back into the protocol."""
        try:
            self.emit(event, *args)
        except Exception:
            logger.exception("%r listener failed", event)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("peer %s: task failed: %r", self.peer_id, task.exception())


def _peer_list(peers: Any) -> list[dict[str, Any]]:
    """Peers of a join or resume reply, each with an ``id``."""
    result = []
    for peer in peers if isinstance(peers, list) else []:
        if isinstance(peer, dict):
            peer_id = peer.get("id", peer.get("peerId"))
            if isinstance(peer_id, str):
                result.append({**peer, "id": peer_id})
    return result


def _ignore(*args: Any) -> None:
    return None
