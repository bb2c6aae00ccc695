"""RoomRecording: one room's tracks sent to the recorder, and Recordings, every room's.

mediasoup's users record through a PlainTransport and FFmpeg; here a plain RTP
transport (our ``PipeTransport``: loopback UDP, no SRTP, rtcp-mux) on the room's
first router is connected to the recorder's socket, and each producer gets a
consumer on it with its own SSRCs, NACK/RTX and keyframe requests, as any
subscriber. A producer hosted on another router is piped to the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RecordingConfig
from ..errors import SfuError
from ..recording.messages import (
    RecorderEvent,
    RecorderMethod,
    RoomConnectRequest,
    RoomStarted,
    RoomStartRequest,
    TrackPauseRequest,
    TrackRemoveRequest,
    TrackRequest,
)
from .recorder import Recorder

if TYPE_CHECKING:
    from ..control.consumer import Consumer
    from ..control.pipe_transport import PipeTransport
    from ..control.producer import Producer
    from ..rooms.peer import Peer
    from ..rooms.room import Room

logger = logging.getLogger(__name__)

# Recorder deaths a minute after which rooms are no longer recorded again.
RESTARTS_PER_MINUTE = 3


def track_request(peer_id: str, consumer: Consumer) -> TrackRequest:
    """What the recorder needs to know of a consumer's stream."""
    parameters = consumer.rtp_parameters
    codec = parameters.codecs[0]
    rtx = next((c for c in parameters.codecs if c.mime_type.lower().endswith("/rtx")), None)
    encoding = parameters.encodings[0]
    assert encoding.ssrc is not None  # a consumer's encodings always have their SSRCs
    return TrackRequest(
        trackId=consumer.producer_id,
        peerId=peer_id,
        kind=consumer.kind,
        mimeType=codec.mime_type,
        clockRate=codec.clock_rate,
        channels=codec.channels or 1,
        payloadType=codec.payload_type,
        ssrc=encoding.ssrc,
        rtxSsrc=encoding.rtx.ssrc if encoding.rtx is not None else None,
        rtxPayloadType=rtx.payload_type if rtx is not None else None,
    )


class RoomRecording:
    """A room being recorded. Changes are applied in order, one at a time."""

    def __init__(self, room: Room, recorder: Recorder, directory: str) -> None:
        self.room = room
        self.directory: Path | None = None
        self.stopped = False
        self._recorder = recorder
        self._root = directory
        self._transport: PipeTransport | None = None
        self._consumers: dict[str, Consumer] = {}
        self._queue: asyncio.Queue[Callable[[], Awaitable[None]] | None] = asyncio.Queue()
        self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while (step := await self._queue.get()) is not None:
            try:
                await step()
            except SfuError as error:  # refused (a codec it cannot record yet), or gone
                logger.warning("room %s: recording: %s", self.room.id, error)
            except Exception:
                logger.exception("room %s: a recording step failed", self.room.id)

    # ---- what the room tells us (synchronous; applied in order) ------------------------

    def start(self) -> None:
        self._queue.put_nowait(self._start)
        for peer in self.room.peers.values():
            for producer in peer.producers.values():
                self.add(peer, producer)

    def add(self, peer: Peer, producer: Producer) -> None:
        self._queue.put_nowait(lambda: self._add(peer.id, producer))

    def remove(self, producer_id: str) -> None:
        self._queue.put_nowait(lambda: self._remove(producer_id))

    async def stop(self) -> None:
        """Stop: the files are closed and ``room.json`` is final when this returns."""
        if not self.stopped:
            self.stopped = True
            self._queue.put_nowait(self._stop)
            self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.shield(self._runner)

    # ---- the steps ------------------------------------------------------------------------

    async def _start(self) -> None:
        started: RoomStarted = await self._recorder.request(
            RecorderMethod.ROOM_START,
            data=RoomStartRequest(roomId=self.room.id, directory=self._root),
        )
        self.directory = Path(started["directory"])
        channel = await self._recorder.channel()
        channel.register(self.room.id, self)
        transport = await self.room.router.create_pipe_transport({"recording": True})
        self._transport = transport
        await transport.connect(started["ip"], started["port"])
        await self._recorder.request(
            RecorderMethod.ROOM_CONNECT,
            self.room.id,
            RoomConnectRequest(ip=transport.ip, port=transport.port),
        )
        logger.info("room %s: recording into %s", self.room.id, self.directory)

    async def _add(self, peer_id: str, producer: Producer) -> None:
        transport = self._transport
        if transport is None or transport.closed or producer.closed or self.stopped:
            return
        router = self.room.router
        if producer.id not in router.producers:
            await producer.transport.router.pipe_to_router(producer.id, router)
        consumer = await transport.consume(
            producer_id=producer.id,
            rtp_capabilities=router.rtp_capabilities,
            paused=False,
            app_data={"recording": True},
        )
        self._consumers[producer.id] = consumer
        try:
            await self._recorder.request(
                RecorderMethod.ROOM_ADD_TRACK, self.room.id, track_request(peer_id, consumer)
            )
        except Exception:
            consumer.close()
            raise
        if consumer.producer_paused:
            self._pause(producer.id, True)
        consumer.on("producerpause", lambda: self._pause(producer.id, True))
        consumer.on("producerresume", lambda: self._pause(producer.id, False))
        consumer.on("@close", lambda: self.remove(producer.id))

    def _pause(self, producer_id: str, paused: bool) -> None:
        async def step() -> None:
            if producer_id in self._consumers:
                await self._recorder.request(
                    RecorderMethod.ROOM_PAUSE_TRACK,
                    self.room.id,
                    TrackPauseRequest(trackId=producer_id, paused=paused),
                )

        if not self.stopped:
            self._queue.put_nowait(step)

    async def _remove(self, producer_id: str) -> None:
        consumer = self._consumers.pop(producer_id, None)
        if consumer is None:
            return
        consumer.close()
        await self._recorder.request(
            RecorderMethod.ROOM_REMOVE_TRACK, self.room.id, TrackRemoveRequest(trackId=producer_id)
        )

    async def _stop(self) -> None:
        self._consumers.clear()
        if self._transport is not None:
            self._transport.close()
        with contextlib.suppress(Exception):
            await self._recorder.request(RecorderMethod.ROOM_STOP, self.room.id)
        with contextlib.suppress(Exception):
            (await self._recorder.channel()).targets.pop(self.room.id, None)
        logger.info("room %s: recording stopped", self.room.id)

    def on_notification(self, event: str, data: Any) -> None:
        if event == RecorderEvent.DISK_FULL:
            logger.error("room %s: recording stopped: the disk is full", self.room.id)
            self.abandon()

    def abandon(self) -> None:
        """The recorder cannot go on (its disk is full, or it died): stop sending it media."""
        self.stopped = True
        self._consumers.clear()
        if self._transport is not None:
            self._transport.close()
        self._queue.put_nowait(None)


class Recordings:
    """Every room recording of the server; with ``auto``, each room from its first producer."""

    def __init__(
        self, settings: RecordingConfig, *, listen_ip: str, log_level: str, log_format: str
    ) -> None:
        self.settings = settings
        self.recorder = Recorder(
            settings, listen_ip=listen_ip, log_level=log_level, log_format=log_format
        )
        self.rooms: dict[str, RoomRecording] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._restarts: list[float] = []
        self.recorder.on("died", self._recorder_died)

    def _recorder_died(self, exit_code: int | None) -> None:
        """Its files decode up to their last second; with ``auto``, each room still
        publishing is recorded again, into a new directory, by a new recorder
        (at most RESTARTS_PER_MINUTE times a minute)."""
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < 60] + [now]
        restart = self.settings.auto and len(self._restarts) <= RESTARTS_PER_MINUTE
        for recording in list(self.rooms.values()):
            recording.abandon()
            del self.rooms[recording.room.id]
            room = recording.room
            if restart and not room.closed and any(p.producers for p in room.peers.values()):
                logger.warning("room %s: the recorder died; recording again", room.id)
                self.start(room)
            else:
                logger.error("room %s: the recorder died; the recording stops", room.id)

    def watch(self, room: Room) -> None:
        """A new room: recorded from its first producer if ``auto``."""
        if not self.settings.auto:
            return

        def on_producer(peer: Peer, producer: Producer) -> None:
            recording = self.rooms.get(room.id)
            if recording is None:
                self.start(room)  # takes every producer the room has, this one too
            elif recording.room is room:
                recording.add(peer, producer)

        room.observer.on("newproducer", on_producer)
        room.observer.on("close", lambda: self.stop_soon(room))

    def start(self, room: Room) -> RoomRecording:
        recording = self.rooms.get(room.id)
        if recording is None or recording.stopped:
            recording = RoomRecording(room, self.recorder, self.settings.directory)
            self.rooms[room.id] = recording
            recording.start()
        return recording

    async def stop(self, room: Room) -> None:
        recording = self.rooms.get(room.id)
        if recording is not None and recording.room is room:
            del self.rooms[room.id]
            await recording.stop()

    def stop_soon(self, room: Room) -> None:
        task = asyncio.create_task(self.stop(room))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        for recording in list(self.rooms.values()):
            self.stop_soon(recording.room)
        if self._stopping:
            await asyncio.wait(list(self._stopping), timeout=10)
        await self.recorder.close()
