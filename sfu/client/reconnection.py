"""Reconnection (docs/protocol.md, "Reconnection and session resume").

When the WebSocket drops without :meth:`SfuClient.close` and without a fatal
signal, and the server gave a ``sessionToken``, the client reconnects to the
same URL with exponential backoff and full jitter and sends ``resume`` first.
Media does not depend on the WebSocket: transports, producers and consumers
live on. If the session is gone (``resume`` answers 404 or 403, or
``reconnect_timeout`` passes) it starts over: closes its transports and
consumers, joins again and produces the same tracks again (new producer
ids). Fatal signals stop it: close code 4000 (replaced by a newer session),
4001 or ``serverShutdown`` (the server is going away), 4003 (removed by an admin), 4029 (a limit), HTTP
400 on the upgrade, and HTTP 401 or 403 on the upgrade (the access token is
refused: expired, or not for this room or peer). Against a server that sends no ``sessionToken`` (or with
``auto_reconnect=False``) a dropped WebSocket closes the client.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any

import aiohttp

from sfu.client.consuming import Consuming
from sfu.client.producing import Producing
from sfu.client.protoo import ProtooConnection, ProtooError
from sfu.client.session import AccessRefusedError, Session
from sfu.client.transports import Transports

if TYPE_CHECKING:
    from sfu.client.client import SfuClient

__all__ = ["Reconnection"]

logger = logging.getLogger(__name__)

# WebSocket close codes (docs/protocol.md, "Fatal and transient failures").
CLOSE_REPLACED = 4000
CLOSE_SHUTDOWN = 4001
CLOSE_MEDIA_LOST = 4002  # transient: the peer was removed, join again
CLOSE_REMOVED = 4003
CLOSE_LIMIT = 4029
_FATAL_CLOSE_CODES = {
    CLOSE_REPLACED: "replaced by a newer session with the same peerId",
    CLOSE_SHUTDOWN: "the server is shutting down",
    CLOSE_LIMIT: "the server or the room is at a limit",
    CLOSE_REMOVED: "removed from the room by an admin (or the room was deleted)",
}
# Errors of a connection attempt or a request that are worth another try.
_TRANSIENT_ERRORS = (ConnectionError, TimeoutError, OSError, aiohttp.ClientError)


class _Fatal(Exception):
    """Stop reconnecting; the message is the reason for the ``fatal`` event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Reconnection:
    """Notices a lost connection, then resumes the session, joins afresh, or gives up."""

    def __init__(
        self,
        client: SfuClient,
        session: Session,
        transports: Transports,
        producing: Producing,
        consuming: Consuming,
    ) -> None:
        self._client = client
        self._session = session
        self._transports = transports
        self._producing = producing
        self._consuming = consuming
        # True from a transient WebSocket loss until ``reconnected`` or ``fatal``.
        self.active = False
        # A connection the reconnection opened and has not adopted yet.
        self.candidate: ProtooConnection | None = None
        self._attempt = 0
        self._shutdown_reason: str | None = None

    def install(self, protoo: ProtooConnection) -> None:
        protoo.on_notification("serverShutdown", self._on_server_shutdown)

    def _on_server_shutdown(self, data: dict[str, Any]) -> None:
        # The connection closes next (4001); that makes it fatal.
        reason = data.get("reason")
        self._shutdown_reason = (
            reason if isinstance(reason, str) and reason else (_FATAL_CLOSE_CODES[CLOSE_SHUTDOWN])
        )
        logger.info("peer %s: server shutdown: %s", self._client.peer_id, self._shutdown_reason)

    # --- noticing ------------------------------------------------------------------

    def on_lost(self, protoo: ProtooConnection) -> None:
        """A protoo connection closed: reconnect, give up, or close the client."""
        client = self._client
        if client.closed or protoo is not self._session.connection or self.active:
            return  # closed by us, an old connection, or the reconnection handles it
        fatal = self._fatal_reason(protoo)
        reconnect = (
            fatal is None
            and client.auto_reconnect
            and self._session.joined
            and self._session.session_token is not None
        )
        self.active = reconnect
        logger.info(
            "peer %s: signaling connection lost (close code %s%s)",
            client.peer_id,
            protoo.close_code,
            f", fatal: {fatal}" if fatal else ", reconnecting" if reconnect else "",
        )
        client._fire("disconnected")
        if fatal is not None:
            client._spawn(self.fail(fatal))
        elif reconnect:
            client._spawn(self._reconnect(protoo))
        else:
            client._spawn(client.close())

    def _fatal_reason(self, protoo: ProtooConnection) -> str | None:
        """Why retrying is pointless, if it is (docs/protocol.md)."""
        if self._shutdown_reason is not None:
            return self._shutdown_reason
        code = protoo.close_code
        if code in _FATAL_CLOSE_CODES:
            return protoo.close_reason or _FATAL_CLOSE_CODES[code]
        return None

    def _raise_if_fatal(self, protoo: ProtooConnection) -> None:
        reason = self._fatal_reason(protoo)
        if reason is not None:
            raise _Fatal(reason)

    async def _reconnect(self, lost: ProtooConnection) -> None:
        """Resume the session, or else join afresh; ``fatal`` if neither works."""
        client = self._client
        started = asyncio.get_running_loop().time()
        self._attempt = 0
        try:
            protoo: ProtooConnection | None = None
            resumed = False
            if lost.close_code != CLOSE_MEDIA_LOST:  # the server removed us: nothing to resume
                resumed, protoo = await self._resume_session(
                    lost, started + client.reconnect_timeout
                )
            if not resumed:
                await self._join_afresh(lost, protoo)
        except _Fatal as exc:
            self.active = False
            await self.fail(exc.reason)
            return
        except Exception as exc:
            logger.exception("peer %s: reconnection failed", client.peer_id)
            self.active = False
            await self.fail(f"reconnection failed: {exc!r}")
            return
        self.active = False
        logger.info(
            "peer %s: %s after %.0f ms",
            client.peer_id,
            "resumed" if resumed else "joined again",
            (asyncio.get_running_loop().time() - started) * 1000,
        )
        client._fire("reconnected", resumed)
        current = self._session.connection
        if current is not None and current.closed:
            self.on_lost(current)  # lost again meanwhile

    # --- attempts ------------------------------------------------------------------

    async def _next_attempt(self, deadline: float | None = None) -> None:
        """Emit ``reconnecting(attempt)``, then wait the attempt's backoff (full jitter)."""
        client = self._client
        self._attempt += 1
        client._fire("reconnecting", self._attempt)
        cap = client.reconnect_initial_delay * 2 ** min(self._attempt - 1, 30)
        delay = random.uniform(0, min(client.reconnect_max_delay, cap))
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - asyncio.get_running_loop().time()))
        await asyncio.sleep(delay)

    async def _open_candidate(self, lost: ProtooConnection) -> ProtooConnection:
        try:
            protoo = await self._session.connect(lost)
        except AccessRefusedError as exc:
            raise _Fatal(exc.message) from exc
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 400:
                raise _Fatal(f"the server refused the WebSocket: HTTP 400 {exc.message}") from exc
            raise
        self.candidate = protoo
        return protoo

    async def _drop_candidate(self, protoo: ProtooConnection) -> None:
        """Close a connection the reconnection gave up on (its close is not reported)."""
        if self.candidate is protoo:
            self.candidate = None
        await protoo.close()

    # --- resuming ------------------------------------------------------------------

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
                    "peer %s: reconnection attempt %d failed: %r",
                    self._client.peer_id,
                    self._attempt,
                    exc,
                )
                continue
            resumed = await self._try_resume(protoo, deadline)
            if resumed is not None:
                return resumed, protoo
        return False, None

    async def _try_resume(self, protoo: ProtooConnection, deadline: float) -> bool | None:
        """``resume`` on ``protoo``: True if resumed, False if the session is gone, None to retry."""
        peer_id = self._client.peer_id
        before_peers = set(self._session.peers)
        before_consumers = self._consuming.known_ids()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            reply = await protoo.request(
                "resume",
                {"sessionToken": self._session.session_token},
                timeout=max(1.0, min(self._client.request_timeout, remaining)),
            )
        except ProtooError as exc:
            # 409 ("resume must be the first request"): the server took
            # this connection for a new peer, so there is no session either.
            if exc.code in (403, 404, 409):
                logger.info("peer %s: cannot resume (%s): joining afresh", peer_id, exc)
                return False
            logger.info("peer %s: resume failed: %s", peer_id, exc)
            await self._drop_candidate(protoo)
            return None
        except _TRANSIENT_ERRORS as exc:
            self._raise_if_fatal(protoo)  # e.g. closed with 4029 or 4001
            await self._drop_candidate(protoo)
            logger.info("peer %s: resume failed: %r", peer_id, exc)
            return None
        self.candidate = None
        self._session.connection = protoo
        await self._reconcile(reply, before_peers, before_consumers)
        return True

    async def _reconcile(
        self, reply: dict[str, Any], before_peers: set[str], before_consumers: set[str]
    ) -> None:
        """Forget what vanished while we were away (the server lists what lives on)."""
        closing = self._consuming.reconcile(reply.get("consumers"), before_consumers)
        listed_producers = [
            p.get("id") for p in reply.get("producers") or [] if isinstance(p, dict)
        ]
        closing += self._producing.reconcile(listed_producers)
        # Closed (and reported) before ``reconnected``; peers after their consumers.
        await asyncio.gather(*closing, return_exceptions=True)
        self._session.reconcile_peers(reply.get("peers"), before_peers)

        transports = {t.get("id"): t for t in reply.get("transports") or [] if isinstance(t, dict)}
        for transport_id in self._transports.open_ids():
            if transport_id not in transports:
                self._client._fire("transportclosed", transport_id, "closed while disconnected")
        if any(t.get("iceState") in ("disconnected", "failed") for t in transports.values()):
            self._client._spawn(self._restart_ice_quietly())

    async def _restart_ice_quietly(self) -> None:
        try:
            await self._client.restart_ice()
        except Exception as exc:
            logger.info("peer %s: restartIce after resume failed: %r", self._client.peer_id, exc)

    # --- joining afresh ------------------------------------------------------------

    async def _join_afresh(self, lost: ProtooConnection, protoo: ProtooConnection | None) -> None:
        """Drop the old transports and consumers, join again, produce the same tracks again."""
        peer_id = self._client.peer_id
        await self._drop_media()
        # Producer ids change: current id -> the id the application knows.
        original = self._producing.id_map()
        failures = 0
        while True:
            if protoo is None:
                if failures >= self._client.rejoin_attempts:
                    raise _Fatal(f"could not join again after {failures} attempts")
                await self._next_attempt()
                try:
                    protoo = await self._open_candidate(lost)
                except _TRANSIENT_ERRORS as exc:
                    failures += 1
                    logger.info("peer %s: join attempt failed: %r", peer_id, exc)
                    continue
            try:
                await self._join_and_produce(protoo, original)
                self.candidate = None
                return
            except ProtooError as exc:
                if exc.code == 429:
                    raise _Fatal(exc.reason) from exc
                logger.info("peer %s: join again failed: %s", peer_id, exc)
            except _TRANSIENT_ERRORS as exc:
                self._raise_if_fatal(protoo)
                logger.info("peer %s: join again failed: %r", peer_id, exc)
            failures += 1
            await self._drop_candidate(protoo)
            await self._drop_media()
            protoo = None

    async def _join_and_produce(self, protoo: ProtooConnection, original: dict[str, str]) -> None:
        session = self._session
        session.connection = protoo  # the transports' callbacks send on it
        before_peers = set(session.peers)
        response = await session.join_room()
        session.reconcile_peers(response.get("peers"), before_peers)
        session.joined = True
        await self._producing.produce_again(original)

    async def _drop_media(self) -> None:
        """Close the transports (and with them producers and consumers) locally; keep the tracks."""
        self._session.joined = False
        consumers = self._consuming.drop()
        self._producing.forget()
        await self._transports.drop()
        for remote in consumers:
            self._client._fire("consumerclosed", remote.id)

    # --- giving up -----------------------------------------------------------------

    async def fail(self, reason: str) -> None:
        """Stop for good: ``fatal(reason)``, then close the client."""
        client = self._client
        if client.closed:
            return
        client.fatal_reason = reason
        logger.warning("peer %s: giving up: %s", client.peer_id, reason)
        client._fire("fatal", reason)
        await client.close()
