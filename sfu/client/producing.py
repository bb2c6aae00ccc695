"""What the client sends: its producers, and the application's tracks behind them.

Produced tracks are wrapped (each producer sends a forwarding track that
reads the application's track), so that the application's track outlives a
transport: aiortc stops the track a sender reads when the sender stops. A
fresh join (see :mod:`sfu.client.reconnection`) produces the same tracks again.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.frame import Frame
from av.packet import Packet

from sfu.client.protoo import ProtooConnection, ProtooError
from sfu.client.transports import Transports

if TYPE_CHECKING:
    from sfu.client.client import SfuClient

__all__ = ["Producing"]

logger = logging.getLogger(__name__)


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

    async def recv(self) -> Frame | Packet[Any]:
        if self.readyState != "live" or self.source.readyState != "live":
            raise MediaStreamError
        return await self.source.recv()


class Producing:
    """The client's producers (pymediasoup Producers by id) and the tracks they send."""

    def __init__(self, client: SfuClient, transports: Transports) -> None:
        self._client = client
        self._transports = transports
        self.producers: dict[str, Any] = {}
        # By producer id: the application's track and how it was produced.
        self._produced: dict[str, _Produced] = {}

    def install(self, protoo: ProtooConnection) -> None:
        protoo.on_notification("producerClosed", self._on_producer_closed)

    # --- the application's calls ---------------------------------------------------

    async def produce(
        self, track: MediaStreamTrack, app_data: dict[str, Any] | None, stop_track: bool
    ) -> str:
        if self._transports.send is None:
            raise RuntimeError("no send transport (not joined, or produce=False)")
        record = _Produced(track, dict(app_data) if app_data is not None else {}, stop_track)
        return await self._produce(record)

    async def _produce(self, record: _Produced) -> str:
        transport = self._transports.send
        if transport is None:
            raise RuntimeError("no send transport")
        async with self._transports.send_lock:
            producer = await transport.produce(
                track=_ForwardingTrack(record.source),
                appData=dict(record.app_data),
                stopTracks=True,  # the forwarding track
            )
        producer_id: str = producer.id
        self.producers[producer_id] = producer
        self._produced[producer_id] = record
        if record.paused:
            await self.set_paused(producer_id, True)
        return producer_id

    def _producer(self, producer_id: str) -> Any:
        try:
            return self.producers[producer_id]
        except KeyError:
            raise KeyError(f"unknown producer {producer_id!r}") from None

    async def set_paused(self, producer_id: str, paused: bool) -> None:
        """``pauseProducer`` or ``resumeProducer``, remembered for a fresh join."""
        producer = self._producer(producer_id)
        if paused:
            producer.pause()
        else:
            producer.resume()
        record = self._produced.get(producer_id)
        if record is not None:
            record.paused = paused
        method = "pauseProducer" if paused else "resumeProducer"
        await self._client.request(method, {"producerId": producer_id})

    async def close_producer(self, producer_id: str) -> None:
        producer = self._producer(producer_id)
        del self.producers[producer_id]
        await self._close_local(producer, self._produced.pop(producer_id, None))
        await self._client.request("closeProducer", {"producerId": producer_id})

    async def _close_local(self, producer: Any, record: _Produced | None) -> None:
        if producer is not None:
            async with self._transports.send_lock:
                try:
                    await producer.close()
                except Exception:
                    logger.exception("closing producer %s failed", producer.id)
        if record is not None and record.stop_track:
            record.source.stop()

    # --- the server's word -------------------------------------------------------

    def _on_producer_closed(self, data: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        producer_id = data.get("producerId")
        if not isinstance(producer_id, str):
            return None
        return self.producer_gone(producer_id, str(data.get("reason", "")))

    def producer_gone(self, producer_id: str, reason: str) -> Coroutine[Any, Any, None] | None:
        """The server closed this producer: close it here, then emit ``producerclosed``."""
        producer = self.producers.pop(producer_id, None)
        record = self._produced.pop(producer_id, None)
        if producer is None and record is None:
            return None

        async def close_and_report() -> None:
            await self._close_local(producer, record)
            self._client._fire("producerclosed", producer_id, reason)

        return close_and_report()

    def reconcile(self, listed: Iterable[object]) -> list[Coroutine[Any, Any, None]]:
        """Close what the server no longer lists (after a resume); closings to await."""
        closing = []
        for producer_id in set(self.producers) - set(listed):
            coroutine = self.producer_gone(producer_id, "closed while disconnected")
            if coroutine is not None:
                closing.append(coroutine)
        return closing

    # --- starting over -----------------------------------------------------------

    def forget(self) -> None:
        """The transport is going: its producers with it; the tracks stay, to produce again."""
        self.producers.clear()

    def id_map(self) -> dict[str, str]:
        """Each producer id mapped to itself, for :meth:`produce_again` to keep up to date."""
        return {producer_id: producer_id for producer_id in self._produced}

    async def produce_again(self, original: dict[str, str]) -> None:
        """Produce every track again on the new send transport; emit ``producersreplaced``.

        ``original`` maps the current id of each producer to the id the
        application knows; it is kept up to date, so that a later attempt
        starts from what this one made.
        """
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
                self._client._fire("producerclosed", original.pop(old_id, old_id), reason)
                continue
            original[new_id] = original.pop(old_id, old_id)
        replaced = {first: current for current, first in original.items()}
        self._client._fire("producersreplaced", replaced)

    def close(self) -> None:
        """The client is closing: forget the producers, stop the tracks it was told to stop."""
        self.producers.clear()
        records = list(self._produced.values())
        self._produced.clear()
        for record in records:
            if record.stop_track:
                record.source.stop()
