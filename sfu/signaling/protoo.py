"""protoo over an aiohttp WebSocket, server side (mediasoup-demo's signaling envelope).

- request: ``{request: true, id, method, data}``
- success: ``{response: true, id, ok: true, data}``
- failure: ``{response: true, id, ok: false, errorCode, errorReason}``
- notification: ``{notification: true, method, data}``

Frames that cannot be answered (non-JSON, non-objects, requests without an
id, stray responses, binary frames) are ignored and the connection stays
open. Outgoing messages go through one writer task, so that sends keep their
order and a slow client never blocks the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from ..errors import InvalidRequestError, LimitError, SfuError, TooLargeError

logger = logging.getLogger(__name__)

RequestHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]
NotificationHandler = Callable[[str, dict[str, Any]], Awaitable[None]]

# A client that lets this many messages pile up unread is treated as dead.
MAX_OUTGOING_QUEUE = 2000


class ProtooRequestError(Exception):
    """The remote answered a request with ok:false, or did not answer."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class TokenBucket:
    """Request-rate limit: ``rate`` tokens a second, up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ProtooConnection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        max_request_bytes: int,
        label: str = "",
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self.ws = ws
        self.label = label
        self.max_request_bytes = max_request_bytes
        self.rate_limit = rate_limit
        self.closed = False
        self.close_code = 1000
        self.close_reason = ""
        self.clean_close = False
        self._outgoing: asyncio.Queue[str | None] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(random.randint(1, 1_000_000))
        self._writer: asyncio.Task[None] | None = None

    # ---- sending -----------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        if self._outgoing.qsize() >= MAX_OUTGOING_QUEUE:
            logger.warning("%s: client does not read its messages; closing", self.label)
            self.close()
            return
        self._outgoing.put_nowait(json.dumps(message, separators=(",", ":")))

    async def _write_loop(self) -> None:
        while True:
            text = await self._outgoing.get()
            if text is None:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def notify(self, method: str, data: dict[str, Any] | None = None) -> None:
        self._send({"notification": True, "method": method, "data": data or {}})

    async def request(self, method: str, data: dict[str, Any] | None = None, response_timeout: float = 10.0) -> Any:
        """A server -> client request; raises ProtooRequestError on ok:false, close or timeout."""
        if self.closed:
            raise ProtooRequestError(410, "connection closed")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._send({"request": True, "id": request_id, "method": method, "data": data or {}})
        try:
            return await asyncio.wait_for(future, response_timeout)
        except TimeoutError:
            raise ProtooRequestError(408, f"{method} request timed out") from None
        finally:
            self._pending.pop(request_id, None)

    # ---- receiving ---------------------------------------------------------

    async def run(self, on_request: RequestHandler, on_notification: NotificationHandler) -> None:
        """Read until the WebSocket closes. Requests are handled one at a time, in order."""
        self._writer = asyncio.create_task(self._write_loop())
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._receive_text(msg.data, on_request, on_notification)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
                # binary and other frames: ignored
            # The client said goodbye (a close frame: 1000, 1001, or 1005 with no
            # code, as protoo-client sends), as opposed to
            # a connection that died: only the latter may come back to resume.
            self.clean_close = self.ws.close_code in (1000, 1001, 1005)
        finally:
            self.close()

    async def _receive_text(
        self, text: str, on_request: RequestHandler, on_notification: NotificationHandler
    ) -> None:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            return
        if not isinstance(message, dict):
            return
        if message.get("request") is True:
            request_id = message.get("id")
            if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
                return  # cannot be answered
            await self._handle_request(request_id, message, len(text), on_request)
        elif message.get("response") is True:
            self._handle_response(message)
        elif message.get("notification") is True:
            method, data = message.get("method"), message.get("data", {})
            if isinstance(method, str) and isinstance(data, dict) and len(text) <= self.max_request_bytes:
                try:
                    await on_notification(method, data)
                except SfuError as error:
                    logger.info("%s: notification %s rejected: %s", self.label, method, error)
                except Exception:
                    logger.exception("%s: notification %s failed", self.label, method)

    async def _handle_request(
        self, request_id: int | str, message: dict[str, Any], size: int, on_request: RequestHandler
    ) -> None:
        method = message.get("method")
        data = message.get("data")
        try:
            if size > self.max_request_bytes:
                raise TooLargeError(
                    f"request of {size} bytes is over the {self.max_request_bytes}-byte limit"
                )
            if self.rate_limit is not None and not self.rate_limit.take():
                raise LimitError(
                    f"too many requests: at most {self.rate_limit.rate:g} a second"
                    f" (bursts of {self.rate_limit.burst:g})"
                )
            if not isinstance(method, str):
                raise InvalidRequestError("request method must be a string")
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise InvalidRequestError("request data must be an object")
            result = await on_request(method, data)
        except SfuError as error:
            self._send_error(request_id, error.code, str(error))
        except TypeError as error:
            self._send_error(request_id, 400, str(error))
        except Exception as error:
            logger.exception("%s: request %r failed", self.label, method)
            self._send_error(request_id, 500, f"internal error ({type(error).__name__})")
        else:
            self._send({"response": True, "id": request_id, "ok": True, "data": result or {}})

    def _send_error(self, request_id: int | str, code: int, reason: str) -> None:
        self._send(
            {"response": True, "id": request_id, "ok": False, "errorCode": code, "errorReason": reason}
        )

    def _handle_response(self, message: dict[str, Any]) -> None:
        future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
        if future is None or future.done():
            return  # a stray response
        if message.get("ok") is True:
            future.set_result(message.get("data") or {})
        else:
            code = message.get("errorCode")
            reason = message.get("errorReason")
            future.set_exception(
                ProtooRequestError(
                    code if isinstance(code, int) else 500,
                    reason if isinstance(reason, str) else "request rejected",
                )
            )

    # ---- closing -----------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close; ``code`` 4000+ tells the client why (see docs/protocol.md)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ProtooRequestError(410, "connection closed"))
        self._pending.clear()
        self._outgoing.put_nowait(None)
        if not self.ws.closed:
            asyncio.get_running_loop().create_task(self._close_ws())

    async def _close_ws(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer, 2.0)
        with contextlib.suppress(Exception):
            await self.ws.close(code=self.close_code, message=self.close_reason.encode()[:120])
