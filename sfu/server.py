"""The HTTP side: protoo WebSocket at ``/?roomId=&peerId=``, ``GET /health``, and the browser client."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from .config import Config
from .media.worker import Worker, WorkerSettings
from .rooms.room import Room
from .signaling.protoo import ProtooConnection

logger = logging.getLogger(__name__)

# roomId and peerId: printable, no spaces, bounded.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
CLIENT_DIST = Path(__file__).resolve().parent.parent / "client" / "dist"


class SfuServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.worker = Worker(
            WorkerSettings(
                listen_ip=config.media.listen_ip,
                announced_ip=config.media.announced_address,
                rtc_min_port=config.media.rtc_min_port,
                rtc_max_port=config.media.rtc_max_port,
            )
        )
        self.rooms: dict[str, Room] = {}
        self._room_creation: dict[str, asyncio.Task[Room]] = {}
        self.app = web.Application()
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/", self.index)
        if CLIENT_DIST.is_dir():
            self.app.router.add_static("/static/", CLIENT_DIST)

    async def _get_room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is not None and not room.closed:
            return room
        # Two peers joining a new room at once must get the same room.
        task = self._room_creation.get(room_id)
        if task is None:
            task = asyncio.create_task(
                Room.create(
                    self.worker,
                    room_id,
                    self.config.router.mediasoup_media_codecs(),
                    consumer_request_timeout=self.config.signaling.consumer_request_timeout,
                )
            )
            self._room_creation[room_id] = task
        try:
            room = await task
        finally:
            self._room_creation.pop(room_id, None)
        if self.rooms.get(room_id) is not room:
            self.rooms[room_id] = room
            room.on("close", lambda: self._forget_room(room))
            logger.info("room %s: created", room_id)
        return room

    def _forget_room(self, room: Room) -> None:
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]

    async def index(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.websocket(request)
        page = CLIENT_DIST / "index.html"
        if page.is_file():
            return web.FileResponse(page)
        return web.Response(
            text="SFU server is running. Connect a mediasoup-client or pymediasoup app over "
            "the protoo WebSocket at /?roomId=ROOM&peerId=PEER.\n",
            content_type="text/plain",
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        room_id = request.query.get("roomId", "")
        peer_id = request.query.get("peerId", "")
        for name, value in (("roomId", room_id), ("peerId", peer_id)):
            if not _ID_PATTERN.match(value):
                raise web.HTTPBadRequest(
                    text=f"{name} must be 1-128 characters of letters, digits and _.:@+-\n"
                )
        max_request = self.config.http.max_request_bytes
        ws = web.WebSocketResponse(
            protocols=("protoo",),
            # Well above the request cap, so an oversized request gets an error
            # response instead of a 1009 close.
            max_msg_size=max(8 * max_request, 1 << 20),
            heartbeat=15.0,
        )
        await ws.prepare(request)
        room = await self._get_room(room_id)
        connection = ProtooConnection(
            ws, max_request_bytes=max_request, label=f"room {room_id} peer {peer_id}"
        )
        await room.run_session(peer_id, connection)
        return ws

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(self.health_data())

    def health_data(self) -> dict[str, Any]:
        counts = self.worker.counts()
        return {
            "status": "ok",
            "rooms": len(self.rooms),
            "peers": sum(len(r.peers) for r in self.rooms.values()),
            "transports": counts["transports"],
            "producers": counts["producers"],
            "consumers": counts["consumers"],
            **self._packet_totals(),
        }

    def _packet_totals(self) -> dict[str, Any]:
        dropped: dict[str, int] = {}
        received = sent = 0
        for router in self.worker.routers.values():
            for transport in router.transports.values():
                received += transport.rtp_packets_received
                sent += transport.rtp_packets_sent
                for reason, count in transport.drops.items():
                    dropped[reason] = dropped.get(reason, 0) + count
        return {"rtpPacketsReceived": received, "rtpPacketsSent": sent, "droppedPackets": dropped}

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            room.close()
        self.worker.close()


async def run_server(config: Config) -> None:
    """Serve until cancelled."""
    server = SfuServer(config)
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http.listen_ip, config.http.port)
    await site.start()
    host = config.http.listen_ip
    shown = f"[{host}]" if ":" in host else host
    logger.info(
        "SFU listening on http://%s:%d (media on %s, announced as %s, UDP %d-%d)",
        shown,
        config.http.port,
        config.media.listen_ip,
        config.media.announced_address,
        config.media.rtc_min_port,
        config.media.rtc_max_port,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
        await runner.cleanup()
