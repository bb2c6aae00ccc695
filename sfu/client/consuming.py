"""What the client receives: a consumer for each ``newConsumer`` the server sends.

Each new consumer is resumed on the server once it exists here, as
mediasoup-demo's client does. ``consumerClosed``, ``consumerPaused`` and
``consumerResumed`` that arrive while a consumer is still being set up are
kept and applied when it is ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiortc import MediaStreamTrack
from pymediasoup.rtp_parameters import RtpParameters

from sfu.aiortc_adapter import route_rtx_to_receiver
from sfu.client.protoo import ProtooConnection, ProtooError
from sfu.client.transports import Transports

if TYPE_CHECKING:
    from sfu.client.client import SfuClient

__all__ = ["Consuming", "RemoteConsumer"]

logger = logging.getLogger(__name__)


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


@dataclass
class _NewConsumer:
    """A checked ``newConsumer`` request."""

    id: str
    producer_id: str
    kind: str
    rtp_parameters: dict[str, Any]
    data: dict[str, Any]

    @classmethod
    def parse(cls, data: dict[str, Any]) -> _NewConsumer:
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
        return cls(consumer_id, producer_id, kind, rtp_parameters, data)


class Consuming:
    """The client's consumers by id, and the ones still being set up."""

    def __init__(self, client: SfuClient, transports: Transports) -> None:
        self._client = client
        self._transports = transports
        self.consumers: dict[str, RemoteConsumer] = {}
        self._pending: dict[str, _PendingConsumer] = {}
        # Set (and replaced) whenever a consumer comes or goes.
        self._changed = asyncio.Event()

    def install(self, protoo: ProtooConnection) -> None:
        protoo.on_request("newConsumer", self._on_new_consumer)
        protoo.on_notification("consumerClosed", self._on_consumer_closed)
        protoo.on_notification("consumerPaused", self._on_consumer_paused)
        protoo.on_notification("consumerResumed", self._on_consumer_resumed)

    def known_ids(self) -> set[str]:
        """The consumers this client has or is setting up."""
        return set(self.consumers) | set(self._pending)

    # --- the application's calls ---------------------------------------------------

    async def set_paused(self, consumer_id: str, paused: bool) -> None:
        """``pauseConsumer`` or ``resumeConsumer`` (our side of :attr:`RemoteConsumer.paused`)."""
        try:
            remote = self.consumers[consumer_id]
        except KeyError:
            raise KeyError(f"unknown consumer {consumer_id!r}") from None
        remote.locally_paused = paused
        if paused:
            remote.consumer.pause()
        else:
            remote.consumer.resume()
        method = "pauseConsumer" if paused else "resumeConsumer"
        await self._client.request(method, {"consumerId": consumer_id})

    async def wait_for(self, count: int, kind: str | None, timeout: float) -> bool:  # noqa: ASYNC109
        """See :meth:`SfuClient.wait_for_consumers`."""

        def enough() -> bool:
            return (
                sum(1 for c in self.consumers.values() if kind is None or c.kind == kind) >= count
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not enough():
            remaining = deadline - loop.time()
            if remaining <= 0 or self._client.closed:
                return enough()
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return enough()
        return True

    def _did_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- newConsumer -----------------------------------------------------------------

    async def _on_new_consumer(self, data: dict[str, Any]) -> dict[str, Any]:
        if not self._client.consume_enabled or self._transports.recv is None:
            raise ProtooError(403, "I do not want to consume")
        new = _NewConsumer.parse(data)
        if new.id in self.consumers or new.id in self._pending:
            raise ProtooError(409, f"consumer {new.id!r} already exists")

        pending = _PendingConsumer()
        self._pending[new.id] = pending
        # In a task of the client's own: if the WebSocket drops meanwhile, the
        # connection cancels this handler, but a consume cut in half would
        # leave pymediasoup's and aiortc's state inconsistent.
        task = self._client._spawn(self._set_up(new, pending))
        remote = await asyncio.shield(task)
        if remote is not None:
            # Sent after our answer: the send lock keeps frames in order and
            # this task cannot run before the answer is queued.
            self._client._spawn(self._resume_on_server(remote))
        return {}

    async def _set_up(self, new: _NewConsumer, pending: _PendingConsumer) -> RemoteConsumer | None:
        peer_id = new.data.get("peerId")
        app_data = new.data.get("appData")
        if not isinstance(app_data, dict):
            app_data = {}
        try:
            async with self._transports.recv_lock:
                transport = self._transports.recv
                if transport is None or transport.closed:
                    raise ProtooError(409, "no receive transport")
                consumer = await transport.consume(
                    id=new.id,
                    producerId=new.producer_id,
                    kind=new.kind,
                    rtpParameters=RtpParameters.model_validate(new.rtp_parameters),
                    appData={**app_data, "peerId": peer_id},
                )
        finally:
            self._pending.pop(new.id, None)
        _route_rtx(transport, new.rtp_parameters)

        remote = RemoteConsumer(
            id=new.id,
            producer_id=new.producer_id,
            peer_id=peer_id if isinstance(peer_id, str) else None,
            kind=new.kind,
            track=consumer.track,
            consumer=consumer,
            app_data=app_data,
            type=str(new.data.get("type", "simple")),
            rtp_parameters=new.rtp_parameters,
            remotely_paused=bool(new.data.get("producerPaused", False)),
        )
        if pending.closed or transport is not self._transports.recv:
            # consumerClosed arrived while we were setting it up (or the
            # client started over meanwhile).
            remote.closed = True
            self._client._spawn(self._close_local(remote))
            return None
        if pending.paused is not None:
            remote.remotely_paused = pending.paused

        self.consumers[new.id] = remote
        consumer.on("transportclose", lambda: self._forget(new.id))
        self._client._fire("newconsumer", remote)
        self._did_change()
        return remote

    async def _resume_on_server(self, remote: RemoteConsumer) -> None:
        """mediasoup-demo's client resumes each new consumer; the server makes it idempotent."""
        if remote.locally_paused or remote.closed:
            return
        try:
            await self._client.request("resumeConsumer", {"consumerId": remote.id})
        except (TimeoutError, ProtooError, ConnectionError) as exc:
            logger.debug("resumeConsumer %s failed: %s", remote.id, exc)

    # --- closing -----------------------------------------------------------------

    def _forget(self, consumer_id: str) -> None:
        remote = self.consumers.pop(consumer_id, None)
        if remote is not None:
            remote.closed = True
            self._did_change()

    async def _close_local(self, remote: RemoteConsumer) -> None:
        async with self._transports.recv_lock:
            try:
                await remote.consumer.close()
            except Exception:
                logger.exception("closing consumer %s failed", remote.id)

    def _on_consumer_closed(self, data: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        consumer_id = data.get("consumerId")
        if not isinstance(consumer_id, str):
            return None
        return self.consumer_gone(consumer_id)

    def consumer_gone(self, consumer_id: str) -> Coroutine[Any, Any, None] | None:
        """The server closed this consumer: close it here, then emit ``consumerclosed``."""
        pending = self._pending.get(consumer_id)
        if pending is not None:
            pending.closed = True
            return None
        remote = self.consumers.pop(consumer_id, None)
        if remote is None:
            return None
        remote.closed = True
        self._did_change()
        return self._close_and_report(remote)

    async def _close_and_report(self, remote: RemoteConsumer) -> None:
        await self._close_local(remote)
        self._client._fire("consumerclosed", remote.id)

    def drop(self) -> list[RemoteConsumer]:
        """Forget every consumer (their transport is closing); the ones that were ready."""
        for pending in self._pending.values():
            pending.closed = True
        consumers = list(self.consumers.values())
        self.consumers.clear()
        for remote in consumers:
            remote.closed = True
        self._did_change()
        return consumers

    # --- paused by the server ----------------------------------------------------------

    def _on_consumer_paused(self, data: dict[str, Any]) -> None:
        self._set_remotely_paused(data.get("consumerId"), True)

    def _on_consumer_resumed(self, data: dict[str, Any]) -> None:
        self._set_remotely_paused(data.get("consumerId"), False)

    def _set_remotely_paused(self, consumer_id: object, paused: bool) -> None:
        if not isinstance(consumer_id, str):
            return
        pending = self._pending.get(consumer_id)
        if pending is not None:
            pending.paused = paused
            return
        remote = self.consumers.get(consumer_id)
        if remote is None:
            return
        remote.remotely_paused = paused
        self._client._fire("consumerpaused" if paused else "consumerresumed", consumer_id)

    # --- after a resume --------------------------------------------------------------

    def reconcile(
        self, listed: list[Any] | None, before: set[str]
    ) -> list[Coroutine[Any, Any, None]]:
        """Match the consumers a ``resume`` reply lists; the closings to await.

        ``before``: the consumers this client knew when it sent ``resume``.
        """
        closing = []
        by_id = {c["id"]: c for c in listed or [] if isinstance(c, dict) and "id" in c}
        for consumer_id in before - by_id.keys():
            coroutine = self.consumer_gone(consumer_id)
            if coroutine is not None:
                closing.append(coroutine)
        for consumer_id, info in by_id.items():
            remote = self.consumers.get(consumer_id)
            producer_paused = info.get("producerPaused")
            if (
                remote is not None
                and isinstance(producer_paused, bool)
                and producer_paused != remote.remotely_paused
            ):
                self._set_remotely_paused(consumer_id, producer_paused)
        return closing


def _route_rtx(transport: Any, rtp_parameters: Mapping[str, Any]) -> None:
    """Work around aiortc dropping RTX with several video receivers (see aiortc_adapter)."""
    rtx_ssrc = ((rtp_parameters.get("encodings") or [{}])[0].get("rtx") or {}).get("ssrc")
    mid = rtp_parameters.get("mid")
    if not isinstance(rtx_ssrc, int) or mid is None:
        return
    for transceiver in transport.handler.pc.getTransceivers():
        if transceiver.mid == mid:
            route_rtx_to_receiver(transceiver.receiver, rtx_ssrc)
