"""The HTTP side: protoo WebSocket at ``/?roomId=&peerId=``, ``GET /health``, and the browser client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web
from pyee.asyncio import AsyncIOEventEmitter

from .auth.admission import Admission, admit, token_from
from .auth.claims import OPEN_GRANTS
from .auth.tokens import TokenRefusal, TokenVerifier
from .config import Config
from .control.worker_pool import NoWorkerError, WorkerPool
from .errors import LimitError, NotFoundError, SfuError
from .livekit.room_service import RoomService
from .livekit.webhooks import Webhooks
from .metrics import metrics_registry, render
from .recording.room_recording import Recordings
from .rooms.requests import ROOM_OR_PEER_ID
from .rooms.room import CLOSE_REMOVED, Room, RoomSettings
from .signaling.client_limits import ClientLimits, LimitRefusal
from .signaling.protoo import ProtooConnection, TokenBucket
from .signaling.request_log import quiet_malformed_requests

logger = logging.getLogger(__name__)

CLIENT_DIST = Path(__file__).resolve().parent.parent / "client" / "dist"


def process_usage() -> dict[str, int]:
    """Open file descriptors, asyncio tasks and RSS: what a leak would grow."""
    usage = {"tasks": len(asyncio.all_tasks())}
    try:
        usage["fds"] = len(os.listdir("/proc/self/fd"))
        with open("/proc/self/statm") as statm:
            usage["rssBytes"] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        pass
    return usage


class SfuServer:
    """The signaling process: HTTP, WebSockets and rooms. Media runs in the
    worker processes of ``self.workers`` (in this process with ``in_process_workers``,
    which tests use to reach the media objects)."""

    def __init__(self, config: Config, *, in_process_workers: bool = False) -> None:
        self.config = config
        self.workers = WorkerPool(
            config.workers.resolved_count,
            config.media,
            log_level=config.log.level,
            log_format=config.log.format,
            event_loop=config.server.event_loop,
            in_process=in_process_workers,
        )
        self.room_settings = RoomSettings(
            consumer_request_timeout=config.signaling.consumer_request_timeout,
            peer_grace_period=config.signaling.peer_grace_period,
            limits=config.limits,
            ice_servers=config.ice_servers,
            max_peers_per_router=config.workers.max_peers_per_router,
        )
        # Access control: None when no key is configured (the server is open).
        self.verifier = TokenVerifier(config.auth.secrets) if config.auth.enabled else None
        # Per client IP: concurrent WebSockets and the join rate.
        self.client_limits = ClientLimits(
            config.limits.max_connections_per_ip,
            config.limits.joins_per_second_per_ip,
            config.limits.join_burst_per_ip,
        )
        # WebSocket upgrades refused by access control or the per-IP caps, by
        # reason (for /metrics).
        self.refusals: Counter[str] = Counter()
        self.accepting = True
        self.loop_lag = 0.0
        self._lag_task: asyncio.Task[None] | None = None
        self._metrics = metrics_registry(self)
        self.rooms: dict[str, Room] = {}
        # ``newroom(room)`` for each room opened (webhooks, RoomService).
        self.observer = AsyncIOEventEmitter()
        self.webhooks = Webhooks(
            config.webhooks, config.auth.secrets.get(config.webhooks.api_key, "")
        )
        self.webhooks.attach(self)
        # Room recordings (the recorder process starts with the first one).
        self.recordings = Recordings(
            config.recording,
            listen_ip="127.0.0.1",
            log_level=config.log.level,
            log_format=config.log.format,
        )
        self.observer.on("newroom", self.recordings.watch)
        self._room_creation: dict[str, asyncio.Task[Room]] = {}
        # LiveKit's RoomService at /twirp/livekit.RoomService/{Method}.
        self.room_service = RoomService(self)
        self.app = web.Application()
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/", self.index)
        self.app.router.add_get("/admission", self.admission)
        self.room_service.twirp.add_routes(self.app)
        if CLIENT_DIST.is_dir():
            self.app.router.add_static("/static/", CLIENT_DIST)

    async def start(self) -> None:
        await self.workers.start()
        self._lag_task = asyncio.create_task(self._measure_loop_lag())

    async def _measure_loop_lag(self, interval: float = 0.5) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + interval
            await asyncio.sleep(interval)
            self.loop_lag = max(0.0, loop.time() - expected)

    async def metrics(self, request: web.Request) -> web.Response:
        await self.workers.refresh_stats()
        body, content_type = render(self._metrics)
        return web.Response(body=body, headers={"Content-Type": content_type})

    def live_room(self, room_id: str) -> Room | None:
        room = self.rooms.get(room_id)
        return room if room is not None and not room.closed else None

    async def _get_room(self, room_id: str, *, create: bool = True) -> Room:
        """The room ``room_id``, made now if ``create`` (NotFoundError if not)."""
        room = self.live_room(room_id)
        if room is not None:
            return room
        if not create and room_id not in self._room_creation:
            raise NotFoundError(f"room {room_id} does not exist")
        # Two peers joining a new room at once must get the same room.
        task = self._room_creation.get(room_id)
        if task is None:
            if len(self.rooms) + len(self._room_creation) >= self.config.limits.max_rooms:
                raise LimitError(
                    f"the server is at its limit of {self.config.limits.max_rooms} rooms"
                )
            task = asyncio.create_task(
                Room.create(
                    self.workers,
                    room_id,
                    self.config.router.mediasoup_media_codecs(),
                    self.room_settings,
                )
            )
            self._room_creation[room_id] = task
        try:
            room = await task
        finally:
            self._room_creation.pop(room_id, None)
        if self.rooms.get(room_id) is not room:
            self.rooms[room_id] = room
            room.max_participants = self.config.rooms.max_participants
            room.departure_timeout = self.config.rooms.departure_timeout
            room.on("close", lambda: self._forget_room(room))
            logger.info("room %s: created", room_id)
            self.observer.emit("newroom", room)
        return room

    async def create_room(
        self,
        room_id: str,
        *,
        empty_timeout: int = 0,
        departure_timeout: int = 0,
        max_participants: int = 0,
        metadata: str = "",
    ) -> Room:
        """RoomService CreateRoom: the room (an existing one keeps its settings,
        as LiveKit's), open with nobody in it for its empty timeout, and after
        its last peer leaves for its departure timeout (default: the same)."""
        existing = self.live_room(room_id)
        room = await self._get_room(room_id)
        if room is existing:
            return room
        room.empty_timeout = empty_timeout or self.config.rooms.empty_timeout
        room.departure_timeout = departure_timeout or room.empty_timeout
        room.max_participants = max_participants or self.config.rooms.max_participants
        room.metadata = metadata
        room.close_if_empty(room.empty_timeout)
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

    def _admit(self, request: web.Request, room_id: str, peer_id: str) -> Admission:
        """The peer, its grants and name; a 401/403 with a JSON body saying why not.
        Open (no keys): everyone, with every grant; a token is ignored."""
        if self.verifier is None:
            return Admission(peer_id, OPEN_GRANTS)
        try:
            return admit(
                self.verifier, token_from(request.query, request.headers), room_id, peer_id
            )
        except TokenRefusal as refusal:
            self.refusals[refusal.reason] += 1
            logger.info("room %s: WebSocket refused: %s", room_id, refusal.message)
            error = web.HTTPUnauthorized if refusal.status == 401 else web.HTTPForbidden
            raise error(text=json.dumps(refusal.body()), content_type="application/json") from None

    async def admission(self, request: web.Request) -> web.Response:
        """The WebSocket's access check alone, for browsers: they cannot read
        the status of a refused upgrade, so they ask here (same query, same
        401/403 JSON body) why it was refused."""
        admitted = self._admit(
            request, request.query.get("roomId", ""), request.query.get("peerId", "")
        )
        self._require_room(request.query.get("roomId", ""))
        return web.json_response({"peerId": admitted.peer_id})

    def _require_room(self, room_id: str) -> None:
        """Without rooms.auto_create, a join to a room that does not exist: 404."""
        if self.config.rooms.auto_create or self.live_room(room_id) is not None:
            return
        raise web.HTTPNotFound(
            text=json.dumps(
                {
                    "error": "not_found",
                    "reason": "no_such_room",
                    "message": f"room {room_id} does not exist (rooms.auto_create is off)",
                }
            ),
            content_type="application/json",
        )

    def _admit_ip(self, request: web.Request, room_id: str) -> str:
        """The client's address, counted; a 429 with a JSON body when over its caps."""
        ip = request.remote or ""
        try:
            self.client_limits.admit(ip)
        except LimitRefusal as refusal:
            self.refusals[refusal.reason] += 1
            logger.info("room %s: WebSocket from %s refused: %s", room_id, ip, refusal.message)
            headers = (
                {} if refusal.retry_after is None else {"Retry-After": str(refusal.retry_after)}
            )
            raise web.HTTPTooManyRequests(
                text=json.dumps(refusal.body()), content_type="application/json", headers=headers
            ) from None
        return ip

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        room_id = request.query.get("roomId", "")
        ip = self._admit_ip(request, room_id)
        try:
            return await self._websocket(request, room_id)
        finally:
            self.client_limits.release(ip)

    async def _websocket(self, request: web.Request, room_id: str) -> web.StreamResponse:
        admission = self._admit(request, room_id, request.query.get("peerId", ""))
        peer_id = admission.peer_id
        for name, value in (("roomId", room_id), ("peerId", peer_id)):
            if not ROOM_OR_PEER_ID.match(value):
                raise web.HTTPBadRequest(
                    text=f"{name} must be 1-128 characters of letters, digits and _.:@+-\n"
                )
        if not self.accepting:
            raise web.HTTPServiceUnavailable(text="the server is shutting down\n")
        self._require_room(room_id)
        auto_create = self.config.rooms.auto_create
        max_request = self.config.http.max_request_bytes
        ws = web.WebSocketResponse(
            protocols=("protoo",),
            # Well above the request cap, so an oversized request gets an error
            # response instead of a 1009 close.
            max_msg_size=max(8 * max_request, 1 << 20),
            heartbeat=15.0,
        )
        await ws.prepare(request)
        try:
            room = await self._get_room(room_id, create=auto_create)
        except NotFoundError as error:  # closed since the check above
            await ws.close(code=CLOSE_REMOVED, message=str(error).encode()[:120])
            return ws
        except LimitError as error:
            await ws.close(code=4029, message=str(error).encode()[:120])
            return ws
        except (NoWorkerError, SfuError) as error:
            # Transient (a worker is restarting or just died): the client's reconnection retries.
            logger.warning("room %s: cannot open it now: %s", room_id, error)
            await ws.close(code=1013, message=str(error).encode()[:120])
            return ws
        limits = self.config.limits
        connection = ProtooConnection(
            ws,
            max_request_bytes=max_request,
            label=f"room {room_id} peer {peer_id}",
            rate_limit=TokenBucket(limits.requests_per_second, limits.request_burst),
        )
        await room.run_session(
            peer_id,
            connection,
            admission.grants,
            name=admission.name,
            metadata=admission.metadata,
        )
        return ws

    async def health(self, request: web.Request) -> web.Response:
        await self.workers.refresh_stats()
        return web.json_response(self.health_data())

    def health_data(self) -> dict[str, Any]:
        """From the workers' stats at the last refresh_stats()."""
        counts = self.workers.counts()
        return {
            "status": "ok" if self.accepting else "shutting-down",
            "auth": "on" if self.verifier is not None else "off",
            "limits": self.client_limits.describe(),
            "roomDefaults": {
                "autoCreate": self.config.rooms.auto_create,
                "emptyTimeout": self.config.rooms.empty_timeout,
                "departureTimeout": self.config.rooms.departure_timeout,
                "maxParticipants": self.config.rooms.max_participants,
            },
            "webhooks": self.webhooks.describe() if self.webhooks.enabled else "off",
            "rooms": len(self.rooms),
            "peers": sum(len(r.peers) for r in self.rooms.values()),
            "transports": counts["transports"],
            "producers": counts["producers"],
            "producersByKind": {
                "audio": counts["audioProducers"],
                "video": counts["videoProducers"],
            },
            "consumers": counts["consumers"],
            "dataProducers": counts["dataProducers"],
            "dataConsumers": counts["dataConsumers"],
            **self._packet_totals(),
            # Whether consumers send through the C extension (sfu.media._native):
            # the workers know, this process never loads the media plane.
            "nativeSend": self._native_send(),
            "process": process_usage(),
            "workers": [
                {
                    "index": w.index,
                    "pid": w.pid,
                    "routers": len(w.routers),
                    **(w.last_stats.get("process") or {}),
                }
                for w in sorted(self.workers.live_workers(), key=lambda w: w.index)
            ],
            "workerRestarts": self.workers.restarts,
        }

    def _native_send(self) -> bool:
        stats = [w.last_stats for w in self.workers.live_workers()]
        return bool(stats) and all(s.get("nativeSend", False) for s in stats)

    def _packet_totals(self) -> dict[str, Any]:
        totals = self.workers.media_totals()
        dropped = {
            key.partition(":")[2]: count
            for key, count in sorted(totals.items())
            if key.startswith("dropped:")
        }
        return {
            "rtpPacketsReceived": totals["rtp_packets_received"],
            "rtpPacketsSent": totals["rtp_packets_sent"],
            "droppedPackets": dropped,
        }

    async def shutdown(self, reason: str, flush_seconds: float) -> None:
        """Stop accepting joins, tell every peer why, close everything."""
        self.accepting = False
        peers = sum(len(room.peers) for room in self.rooms.values())
        logger.info("shutting down: telling %d peers in %d rooms", peers, len(self.rooms))
        for room in list(self.rooms.values()):
            room.shutdown(reason)
        if peers:
            # The goodbye notifications and WebSocket closes are queued: let them go out.
            await asyncio.sleep(min(0.5, flush_seconds))
        await self.close()

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        for room in list(self.rooms.values()):
            room.close()
        await self.recordings.close()
        await self.workers.close()
        # room_finished and whatever else is queued: bounded, a dead receiver can't hold us.
        await self.webhooks.close(min(5.0, self.config.signaling.shutdown_timeout))


async def run_server(config: Config) -> None:
    """Serve until cancelled, SIGTERM or SIGINT; then shut down gracefully."""
    quiet_malformed_requests()
    server = SfuServer(config)
    await server.start()
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    ssl_context = None
    if config.tls.enabled:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls.cert, config.tls.key)
    site = web.TCPSite(runner, config.http.listen_ip, config.http.port, ssl_context=ssl_context)
    await site.start()
    host = config.http.listen_ip
    shown = f"[{host}]" if ":" in host else host
    workers = server.workers.count
    last_port = config.media.udp_port + workers - 1
    media_ports = (
        f"UDP {config.media.udp_port} (single port)"
        if config.media.udp_port and workers == 1
        else f"UDP {config.media.udp_port}-{last_port} (a single port per worker)"
        if config.media.udp_port
        else f"UDP {config.media.rtc_min_port}-{config.media.rtc_max_port}"
    )
    logger.info(
        "SFU listening on %s://%s:%d (media on %s, announced as %s, %s, %d workers)",
        "https" if ssl_context else "http",
        shown,
        config.http.port,
        config.media.listen_ip,
        config.media.announced_address,
        media_ports,
        workers,
    )
    if server.verifier is None:
        logger.warning(
            "access control is off: no API key is configured ([auth] keys or"
            " SFU_API_KEY/SFU_API_SECRET), so anyone who reaches this server may join any room"
        )
    else:
        logger.info("access control is on: %d API keys; joins need a token", len(config.auth.keys))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        await server.shutdown("the server is shutting down", config.signaling.shutdown_timeout)
    finally:
        await server.close()
        await asyncio.wait_for(runner.cleanup(), config.signaling.shutdown_timeout)
    logger.info("server stopped")
