"""SfuClient: joins a room the way mediasoup-demo's client does, on pymediasoup + aiortc.

The class is a facade over its parts, one module each:

- :mod:`sfu.client.session`: the protoo connection, ``join``, the peers in the room;
- :mod:`sfu.client.transports`: the Device and the send and receive transports;
- :mod:`sfu.client.producing` and :mod:`sfu.client.consuming`: producers and consumers;
- :mod:`sfu.client.reconnection`: resume after a dropped WebSocket, or join afresh.

While reconnecting, :meth:`SfuClient.request` raises ``ConnectionError``.
Every request the client makes goes through :meth:`SfuClient.request`.

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
import logging
import secrets
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Generic, Self, TypeVar, overload

import jwt
from aiortc import MediaStreamTrack
from pyee.asyncio import AsyncIOEventEmitter

from sfu.aiortc_adapter import set_host_addresses
from sfu.client.consuming import Consuming, RemoteConsumer
from sfu.client.data import DataChannels, DataOptions, RemoteDataConsumer
from sfu.client.producing import Producing
from sfu.client.protoo import ProtooConnection
from sfu.client.reconnection import Reconnection
from sfu.client.session import Session, default_device_info
from sfu.client.transports import Transports

__all__ = ["RemoteConsumer", "SfuClient", "default_device_info"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _PartAttribute(Generic[T]):
    """A read-only attribute of :class:`SfuClient` that is an attribute of one of its parts."""

    def __init__(self, part: str, attribute: str = "") -> None:
        self._part = part
        self._attribute = attribute

    def __set_name__(self, owner: type, name: str) -> None:
        self._attribute = self._attribute or name

    @overload
    def __get__(self, client: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, client: object, owner: type | None = None) -> T: ...
    def __get__(self, client: object, owner: type | None = None) -> Self | T:
        if client is None:
            return self
        value: T = getattr(getattr(client, self._part), self._attribute)
        return value

    def __set__(self, client: object, value: T) -> None:
        raise AttributeError(f"SfuClient.{self._attribute} is read-only")


def token_subject(access_token: str) -> str | None:
    """The ``sub`` of a LiveKit access token, read without verifying it (the
    server verifies); None when it has none or is no JWT."""
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and sub else None


class SfuClient(AsyncIOEventEmitter):
    """A room participant: produce tracks, consume everybody else's.

    ``auto_reconnect``: resume the session when the WebSocket drops (see
    :mod:`sfu.client.reconnection`). Attempts wait ``random.uniform(0,
    min(reconnect_max_delay, reconnect_initial_delay * 2 ** (attempt - 1)))``
    seconds; after ``reconnect_timeout`` seconds without a resume the client
    joins afresh, up to ``rejoin_attempts`` times, then gives up (``fatal``).
    ``heartbeat``: WebSocket ping interval in seconds (None: off), so that a
    silently dead network is noticed. ``access_token``: a LiveKit access token
    for a server with access control (docs/auth.md), sent as ``access_token``;
    an upgrade refused with 401 or 403 raises ``AccessRefusedError`` from
    ``join()`` and is never retried by the reconnection (``fatal``). Without
    ``peer_id`` the peer is the token's ``sub``, as the server takes it.
    """

    def __init__(  # noqa: PLR0913 - the client's options, keyword-only (tests, the bench and `python -m sfu.client` pass them by name)
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
        access_token: str | None = None,
    ) -> None:
        super().__init__()
        if reconnect_initial_delay < 0 or reconnect_max_delay < 0 or reconnect_timeout < 0:
            raise ValueError("reconnection delays and timeout must not be negative")
        if rejoin_attempts < 1:
            raise ValueError("rejoin_attempts must be at least 1")
        self.url = url
        self.room_id = room_id
        if peer_id is None:
            # With a token, the server takes its `sub` as the peer (docs/auth.md).
            peer_id = (access_token and token_subject(access_token)) or secrets.token_hex(4)
        self.peer_id = peer_id
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
        self.access_token = access_token
        self.ssl = ssl
        # Why the client gave up (see the `fatal` event), if it did.
        self.fatal_reason: str | None = None

        self._join_called = False
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transports = Transports(self)
        self._producing = Producing(self, self._transports)
        self._consuming = Consuming(self, self._transports)
        self._data = DataChannels(self, self._transports)
        self._session = Session(self, self._transports, self._wire)
        self._reconnection = Reconnection(
            self, self._session, self._transports, self._producing, self._consuming
        )

    def _wire(self, protoo: ProtooConnection, previous: ProtooConnection | None) -> None:
        """Ready a new connection: handlers before its first request, as newConsumer
        and newPeer may arrive before the join (or resume) response."""
        if previous is not None:
            protoo.copy_handlers_from(previous)
        else:
            # Each part answers the server's requests and notifications about what it owns.
            self._session.install(protoo)
            self._transports.install(protoo)
            self._producing.install(protoo)
            self._consuming.install(protoo)
            self._data.install(protoo)
            self._reconnection.install(protoo)
        protoo.on_close(lambda: self._reconnection.on_lost(protoo))

    # --- state: read-only views of the parts -------------------------------------

    protoo = _PartAttribute[ProtooConnection]("_session")
    protoo_url = _PartAttribute[str]("_session", "url")
    joined = _PartAttribute[bool]("_session")
    # From the join reply: what ``resume`` needs (None: the server cannot resume).
    session_token = _PartAttribute[str | None]("_session")
    peers = _PartAttribute[dict[str, dict[str, Any]]]("_session")
    consumers = _PartAttribute[dict[str, RemoteConsumer]]("_consuming")
    data_consumers = _PartAttribute[dict[str, RemoteDataConsumer]]("_data")
    # pymediasoup Producers by id.
    producers = _PartAttribute[dict[str, Any]]("_producing")
    router_rtp_capabilities = _PartAttribute[dict[str, Any] | None]("_transports")
    device = _PartAttribute[Any]("_transports")  # the pymediasoup Device
    # pymediasoup Transports (None before the join, or with produce/consume=False).
    send_transport = _PartAttribute[Any]("_transports", "send")
    recv_transport = _PartAttribute[Any]("_transports", "recv")
    # True from a transient WebSocket loss until ``reconnected`` or ``fatal``.
    reconnecting = _PartAttribute[bool]("_reconnection", "active")

    @property
    def closed(self) -> bool:
        return self._closed

    # --- joining and requests --------------------------------------------------

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
            return await self._session.join()
        except BaseException:
            await self.close()
            raise

    async def request(
        self,
        method: str,
        data: Mapping[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        """Send a protoo request and return the response data (any JSON value);
        raise :class:`ProtooError` on an error response.

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
        return await self._transports.restart_ice()

    # --- producing and consuming -----------------------------------------------

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
        return await self._producing.produce(track, app_data, stop_track)

    async def pause_producer(self, producer_id: str) -> None:
        await self._producing.set_paused(producer_id, True)

    async def resume_producer(self, producer_id: str) -> None:
        await self._producing.set_paused(producer_id, False)

    async def close_producer(self, producer_id: str) -> None:
        await self._producing.close_producer(producer_id)

    async def pause_consumer(self, consumer_id: str) -> None:
        await self._consuming.set_paused(consumer_id, True)

    async def resume_consumer(self, consumer_id: str) -> None:
        await self._consuming.set_paused(consumer_id, False)

    async def wait_for_consumers(
        self,
        count: int,
        *,
        kind: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> bool:
        """Wait until at least ``count`` consumers (of ``kind``, if given) exist."""
        return await self._consuming.wait_for(count, kind, timeout)

    # --- data channels -------------------------------------------------------------

    async def send_data(
        self,
        message: str | bytes,
        *,
        label: str = "chat",
        options: DataOptions | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Send ``message`` (text or binary) on this client's data producer of
        ``label``, made on first use with ``options`` (default: ordered,
        reliable), once its SCTP stream is open. The other peers' clients fire
        ``data`` with a :class:`~sfu.client.data.DataMessage`."""
        await self._data.send(message, label, options, timeout)

    async def produce_data(
        self,
        label: str = "chat",
        options: DataOptions | None = None,
        app_data: dict[str, Any] | None = None,
    ) -> Any:
        """A new data producer of ``label`` (the pymediasoup DataProducer: ``.id``,
        ``.send()``); :meth:`send_data` then uses it for that label."""
        return await self._data.produce_data(label, options or DataOptions(), app_data or {})

    async def close_data_producer(self, label: str = "chat") -> None:
        """Close the data producer of ``label``; the others' data consumers close."""
        await self._data.close_data_producer(label)

    # --- closing -----------------------------------------------------------------

    def _drop_connection_for_test(self) -> None:
        """Drop the WebSocket's TCP connection without a close frame, as a network failure would."""
        self.protoo.abort()

    async def close(self) -> None:
        """Close the signaling connection, the transports, producers and consumers."""
        if self._closed:
            return
        self._closed = True
        self._reconnection.active = False
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        for protoo in (self._reconnection.candidate, self._session.connection):
            if protoo is not None:
                await protoo.close()
        self._consuming.drop()
        self._data.drop()
        self._producing.forget()
        # Closing a transport closes its producers and consumers (and their tracks).
        await self._transports.close()
        self._producing.close()

    async def __aenter__(self) -> SfuClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- for the parts -------------------------------------------------------------

    def _fire(self, event: str, *args: Any) -> None:
        """Emit to the application; its failures are logged, never fed back into the protocol."""
        try:
            self.emit(event, *args)
        except Exception:
            logger.exception("%r listener failed", event)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in a task of the client's own (cancelled by :meth:`close`)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("peer %s: task failed: %r", self.peer_id, task.exception())
