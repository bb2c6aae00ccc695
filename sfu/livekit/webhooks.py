"""LiveKit webhooks: room and participant events POSTed to the configured URLs.

Each event is a ``livekit.protocol.webhook.WebhookEvent`` as protobuf JSON
(google.protobuf.json_format, camelCase, as LiveKit's protojson), sent with
``Content-Type: application/webhook+json`` and an ``Authorization`` JWT signed
with the webhook key's secret whose ``sha256`` claim is the body's base64
SHA-256: livekit-api's ``WebhookReceiver`` accepts it as LiveKit's own.

``emit`` is synchronous and never waits: events queue per (URL, room), so a
room's events arrive in order and a slow room never holds up another. A failed
attempt (a non-2xx answer, a timeout, a connection error) is retried with
doubling pauses, up to ``max_attempts``. When ``max_pending`` events already
wait, new ones are dropped and counted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import jwt
from google.protobuf import json_format
from livekit.protocol import models
from livekit.protocol.webhook import WebhookEvent

from .info import participant_info, room_info, track_info

if TYPE_CHECKING:
    from ..config.model import WebhooksConfig
    from ..control.producer import Producer
    from ..rooms.peer import Peer
    from ..rooms.room import Room
    from ..server import SfuServer

__all__ = ["EVENTS", "OUTCOMES", "Webhooks"]

logger = logging.getLogger(__name__)

EVENTS = (
    "room_started",
    "room_finished",
    "participant_joined",
    "participant_left",
    "track_published",
    "track_unpublished",
)
# delivered; failed (every attempt failed); dropped (the queue was full).
OUTCOMES = ("delivered", "failed", "dropped")

CONTENT_TYPE = "application/webhook+json"
# How long a webhook's token is valid: LiveKit's notifier uses 5 minutes.
TOKEN_TTL_SECONDS = 300
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0


def encode_event(event: WebhookEvent) -> bytes:
    return json_format.MessageToJson(event, indent=None).encode()


def sign(body: bytes, api_key: str, secret: str, now: float | None = None) -> str:
    """The Authorization header's JWT, as LiveKit's access token with a sha256 claim."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": api_key,
        "nbf": issued,
        "exp": issued + TOKEN_TTL_SECONDS,
        "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
        "video": {},
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def retry_delay(failed_attempts: int) -> float:
    return float(min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * 2 ** (failed_attempts - 1)))


class Webhooks:
    """The notifier: one aiohttp session, one ordered queue per (URL, room)."""

    def __init__(
        self,
        config: WebhooksConfig,
        secret: str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._secret = secret
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._queues: dict[tuple[str, str], deque[tuple[str, bytes]]] = {}
        self._senders: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.pending = 0
        # (event, outcome) -> count, for /metrics.
        self.counts: Counter[tuple[str, str]] = Counter()

    @property
    def enabled(self) -> bool:
        return bool(self.config.urls)

    def describe(self) -> dict[str, Any]:
        """For /health: where events go, never the secret."""
        return {
            "urls": list(self.config.urls),
            "apiKey": self.config.api_key,
            "pending": self.pending,
            "dropped": sum(n for (_, outcome), n in self.counts.items() if outcome == "dropped"),
        }

    # ------------------------------------------------------------------ wiring

    def attach(self, server: SfuServer) -> None:
        server.observer.on("newroom", self._on_new_room)

    def _on_new_room(self, room: Room) -> None:
        self.emit("room_started", room_info(room), room_key=room.sid)
        observer = room.observer

        def joined(peer: Peer) -> None:
            if not peer.hidden:  # LiveKit tells nobody about hidden participants
                self.emit(
                    "participant_joined", room_info(room), participant_info(peer), None, room.sid
                )

        def left(peer: Peer) -> None:
            if not peer.hidden:
                self.emit(
                    "participant_left", room_info(room), participant_info(peer), None, room.sid
                )

        def published(peer: Peer, producer: Producer) -> None:
            self.emit(
                "track_published",
                room_info(room),
                participant_info(peer),
                track_info(producer),
                room.sid,
            )

        def unpublished(peer: Peer, producer: Producer) -> None:
            self.emit(
                "track_unpublished",
                room_info(room),
                participant_info(peer),
                track_info(producer),
                room.sid,
            )

        observer.on("peerjoined", joined)
        observer.on("peerleft", left)
        observer.on("newproducer", published)
        observer.on("producerclose", unpublished)
        observer.once(
            "close", lambda: self.emit("room_finished", room_info(room), room_key=room.sid)
        )

    # ------------------------------------------------------------------ queueing

    def emit(
        self,
        name: str,
        room: models.Room,
        participant: models.ParticipantInfo | None = None,
        track: models.TrackInfo | None = None,
        room_key: str = "",
    ) -> None:
        """Queue one event for every URL; never blocks (drops when full)."""
        if not self.config.urls:
            return
        event = WebhookEvent(
            event=name,
            room=room,
            id="EV_" + secrets.token_urlsafe(9),
            created_at=int(time.time()),
        )
        if participant is not None:
            event.participant.CopyFrom(participant)
        if track is not None:
            event.track.CopyFrom(track)
        body = encode_event(event)
        for url in self.config.urls:
            if self.pending >= self.config.max_pending:
                self.counts[name, "dropped"] += 1
                logger.warning(
                    "webhook %s to %s dropped: %d events pending", name, url, self.pending
                )
                continue
            key = (url, room_key)
            self._queues.setdefault(key, deque()).append((name, body))
            self.pending += 1
            if key not in self._senders:
                self._senders[key] = asyncio.get_running_loop().create_task(self._send_queue(key))

    async def _send_queue(self, key: tuple[str, str]) -> None:
        url = key[0]
        queue = self._queues[key]
        try:
            while queue:
                name, body = queue[0]
                delivered = await self._deliver(url, name, body)
                queue.popleft()
                self.pending -= 1
                self.counts[name, "delivered" if delivered else "failed"] += 1
        finally:
            # Anything left (cancelled at shutdown) is lost: count it as failed.
            for name, _ in queue:
                self.counts[name, "failed"] += 1
            self.pending -= len(queue)
            del self._queues[key]
            del self._senders[key]

    async def _deliver(self, url: str, name: str, body: bytes) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
        for attempt in range(1, self.config.max_attempts + 1):
            headers = {
                "Content-Type": CONTENT_TYPE,
                "Authorization": sign(body, self.config.api_key, self._secret),
            }
            try:
                async with self._session.post(
                    url, data=body, headers=headers, timeout=timeout
                ) as response:
                    if 200 <= response.status < 300:
                        return True
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                problem = f"{type(e).__name__}: {e}"
            if attempt == self.config.max_attempts:
                logger.warning(
                    "webhook %s to %s failed after %d attempts: %s", name, url, attempt, problem
                )
                return False
            delay = retry_delay(attempt)
            logger.info("webhook %s to %s: %s; retrying in %.1fs", name, url, problem, delay)
            await self._sleep(delay)
        return False

    async def close(self, flush_seconds: float) -> None:
        """Let queued events go out for up to ``flush_seconds``, then give up on the rest."""
        senders = list(self._senders.values())
        if senders:
            _, late = await asyncio.wait(senders, timeout=flush_seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._session is not None:
            await self._session.close()
            self._session = None
