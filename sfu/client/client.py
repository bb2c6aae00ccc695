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
import secrets
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import MediaStreamTrack
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


class SfuClient(AsyncIOEventEmitter):
    """A room participant: produce tracks, consume everybody else's."""

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
    ) -> None:
        super().__init__()
        self.url = url
        self.room_id = room_id
        self.peer_id = peer_id if peer_id is not None else secrets.token_hex(4)
        self.display_name = display_name
        self.device_info = dict(device) if device is not None else default_device_info()
        self.ice_addresses = list(ice_addresses) if ice_addresses is not None else None
        self.produce_enabled = produce
        self.consume_enabled = consume
        self.request_timeout = request_timeout
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

        self._protoo: ProtooConnection | None = None
        self._closed = False
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
    def protoo_url(self) -> str:
        url = URL(self.url)
        if not url.path:
            url = url.with_path("/")
        return str(url.update_query(roomId=self.room_id, peerId=self.peer_id))

    # --- joining -------------------------------------------------------------

    async def join(self) -> list[dict[str, Any]]:
        """Connect, create the transports, ``join``; return the peers already in the room."""
        if self._protoo is not None:
            raise RuntimeError("join() was already called")
        if self._closed:
            raise RuntimeError("client closed")
        if self.ice_addresses is not None:
            set_host_addresses(self.ice_addresses)

        self._protoo = await ProtooConnection.connect(
            self.protoo_url, timeout=self.request_timeout, ssl=self._ssl
        )
        protoo = self._protoo
        # Handlers go in before the first request: newConsumer and newPeer may
        # arrive before the join response.
        protoo.on_request("newConsumer", self._on_new_consumer)
        protoo.on_request("newDataConsumer", self._on_new_data_consumer)
        protoo.on_notification("newPeer", self._on_new_peer)
        protoo.on_notification("peerClosed", self._on_peer_closed)
        protoo.on_notification("peerDisplayNameChanged", self._on_peer_display_name_changed)
        protoo.on_notification("consumerClosed", self._on_consumer_closed)
        protoo.on_notification("consumerPaused", self._on_consumer_paused)
        protoo.on_notification("consumerResumed", self._on_consumer_resumed)
        protoo.on_notification("activeSpeaker", self._on_active_speaker)
        protoo.on_any_notification(self._on_other_notification)
        protoo.on_close(self._on_protoo_closed)

        try:
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
        except BaseException:
            await self.close()
            raise

        peers = [p for p in (response.get("peers") or []) if isinstance(p, dict)]
        for peer in peers:
            peer_id = peer.get("id", peer.get("peerId"))
            if isinstance(peer_id, str):
                # Keep a newPeer that raced ahead of the join response.
                self.peers.setdefault(peer_id, {**peer, "id": peer_id})
        self.joined = True
        return peers

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
            # Never the public STUN server aiortc uses by default.
            "iceServers": [],
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
        """Send a protoo request; raise :class:`ProtooError` on an error response."""
        return await self.protoo.request(
            method, data, timeout=self.request_timeout if timeout is None else timeout
        )

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
        producer closes.
        """
        if self.send_transport is None:
            raise RuntimeError("no send transport (not joined, or produce=False)")
        async with self._send_lock:
            producer = await self.send_transport.produce(
                track=track,
                appData=dict(app_data) if app_data is not None else {},
                stopTracks=stop_track,
            )
        self.producers[producer.id] = producer
        producer_id: str = producer.id
        return producer_id

    def _producer(self, producer_id: str) -> Any:
        try:
            return self.producers[producer_id]
        except KeyError:
            raise KeyError(f"unknown producer {producer_id!r}") from None

    async def pause_producer(self, producer_id: str) -> None:
        self._producer(producer_id).pause()
        await self.request("pauseProducer", {"producerId": producer_id})

    async def resume_producer(self, producer_id: str) -> None:
        self._producer(producer_id).resume()
        await self.request("resumeProducer", {"producerId": producer_id})

    async def close_producer(self, producer_id: str) -> None:
        producer = self._producer(producer_id)
        del self.producers[producer_id]
        await producer.close()
        await self.request("closeProducer", {"producerId": producer_id})

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
        peer_id = data.get("peerId")
        app_data = data.get("appData")
        if not isinstance(consumer_id, str) or not isinstance(producer_id, str):
            raise ProtooError(400, "newConsumer: id and producerId must be strings")
        if kind not in ("audio", "video"):
            raise ProtooError(400, f"newConsumer: bad kind {kind!r}")
        if not isinstance(rtp_parameters, dict):
            raise ProtooError(400, "newConsumer: rtpParameters must be an object")
        if not isinstance(app_data, dict):
            app_data = {}
        if consumer_id in self.consumers or consumer_id in self._pending_consumers:
            raise ProtooError(409, f"consumer {consumer_id!r} already exists")

        pending = _PendingConsumer()
        self._pending_consumers[consumer_id] = pending
        try:
            async with self._recv_lock:
                consumer = await self.recv_transport.consume(
                    id=consumer_id,
                    producerId=producer_id,
                    kind=kind,
                    rtpParameters=RtpParameters.model_validate(rtp_parameters),
                    appData={**app_data, "peerId": peer_id},
                )
        finally:
            self._pending_consumers.pop(consumer_id, None)
        self._route_rtx(rtp_parameters)

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
        if pending.closed:
            # consumerClosed arrived while we were setting it up.
            remote.closed = True
            self._spawn(self._close_local_consumer(remote))
            return {}
        if pending.paused is not None:
            remote.remotely_paused = pending.paused

        self.consumers[consumer_id] = remote
        consumer.on("transportclose", lambda: self._forget_consumer(consumer_id))
        self._fire("newconsumer", remote)
        self._consumers_did_change()
        # Sent after our answer: the send lock keeps frames in order and this
        # task cannot run before the answer is queued.
        self._spawn(self._resume_on_server(remote))
        return {}

    def _route_rtx(self, rtp_parameters: Mapping[str, Any]) -> None:
        """Work around aiortc dropping RTX with several video receivers (see aiortc_adapter)."""
        rtx_ssrc = ((rtp_parameters.get("encodings") or [{}])[0].get("rtx") or {}).get("ssrc")
        mid = rtp_parameters.get("mid")
        if not isinstance(rtx_ssrc, int) or mid is None:
            return
        for transceiver in self.recv_transport.handler.pc.getTransceivers():
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

    def _on_other_notification(self, method: str, data: dict[str, Any]) -> None:
        self._fire("notification", method, data)

    # --- closing -------------------------------------------------------------

    def _on_protoo_closed(self) -> None:
        if self._closed:
            return
        logger.info("peer %s: signaling connection lost", self.peer_id)
        self._fire("disconnected")
        self._spawn(self.close())

    async def close(self) -> None:
        """Close the signaling connection, the transports, producers and consumers."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self._protoo is not None:
            await self._protoo.close()
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

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ignore(*args: Any) -> None:
    return None
