"""protoo over an aiohttp WebSocket, server side (mediasoup-demo's signaling envelope).

The message shapes are in :mod:`sfu.signaling.protoo_message`, shared with the client.

Frames that cannot be answered (non-JSON, non-objects, requests without an
id, stray responses, binary frames) are ignored and the connection stays
open. Outgoing messages go through one writer task, so that sends keep their
order and a slow client never blocks the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from ..errors import InvalidRequestError, LimitError, SfuError, TooLargeError
from . import protoo_message
from .protoo_message import PendingRequests, valid_id

logger = logging.getLogger(__name__)

RequestHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]
NotificationHandler = Callable[[str, dict[str, Any]], Awaitable[None]]

# A client that lets this many messages pile up unread is treated as dead.
MAX_OUTGOING_QUEUE = 2000
# Deeper requests are refused: they could not be echoed back to other peers
# (device, appData) without hitting Python's recursion limit.
MAX_NESTING = 32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# Any integer json.loads reads (possessive: a long run of digits cannot backtrack).
_SCALAR = re.compile(r"-?\d++(?![.eE])|true|false|null")


def _shallow(value: object, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth >= limit:
                return False
            stack.extend((child, depth + 1) for child in item)
    return True


def _salvage_request_id(text: str) -> int | str | None:
    """The id of a request that json.loads refused (too deep, huge numbers), read
    from its top-level keys by a scan that needs no recursion; None if not a request."""
    depth, index, length = 0, 0, len(text)
    top: dict[str, str] = {}
    key: str | None = None
    while index < length:
        char = text[index]
        if char == '"':
            match = _STRING.match(text, index)
            if match is None:
                return None
            if depth == 1:
                if key is None and text[match.end() :].lstrip().startswith(":"):
                    key = json.loads(match.group())
                elif key is not None:
                    top[key], key = match.group(), None
            index = match.end()
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        elif depth == 1 and key is not None and char not in " \t\r\n:,":
            match = _SCALAR.match(text, index)
            if match is not None:
                top[key] = match.group()
                index = match.end()
            key = None
            continue
        elif depth == 1 and char == ",":
            key = None
        index += 1
    if top.get("request") != "true" or "id" not in top:
        return None
    try:
        value = json.loads(top["id"])
    except ValueError:
        return None
    return value if valid_id(value) else None


def notification_text(method: str, data: dict[str, Any] | None = None) -> str:
    """A notification serialized once, for :meth:`ProtooConnection.send_text` to many peers.

    Raises ``ValueError`` or ``TypeError`` if ``data`` cannot be serialized.
    """
    return protoo_message.encode(protoo_message.notification(method, data))


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
        self._pending = PendingRequests(ProtooRequestError)
        self._writer: asyncio.Task[None] | None = None

    # ---- sending -----------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> bool:
        """Queue a message; False (logged, nothing sent) if it cannot be serialized."""
        if self.closed:
            return True
        try:
            text = protoo_message.encode(message)
        except (ValueError, TypeError, RecursionError):
            logger.error(
                "%s: cannot serialize a %r message; dropped", self.label, message.get("method")
            )
            return False
        self.send_text(text)
        return True

    def send_text(self, text: str) -> None:
        """Queue an already serialized message (see :func:`notification_text`)."""
        if self.closed:
            return
        if self._outgoing.qsize() >= MAX_OUTGOING_QUEUE:
            logger.warning("%s: client does not read its messages; closing", self.label)
            self.close()
            return
        self._outgoing.put_nowait(text)

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
        self._send(protoo_message.notification(method, data))

    async def request(
        self, method: str, data: dict[str, Any] | None = None, response_timeout: float = 10.0
    ) -> Any:
        """A server -> client request; raises ProtooRequestError on ok:false, close or timeout."""
        if self.closed:
            raise ProtooRequestError(410, "connection closed")
        request_id, future = self._pending.add()
        self._send(protoo_message.request(request_id, method, data))
        try:
            return await asyncio.wait_for(future, response_timeout)
        except TimeoutError:
            raise ProtooRequestError(408, f"{method} request timed out") from None
        finally:
            self._pending.discard(request_id)

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
        size = len(text) if len(text) * 4 <= self.max_request_bytes else len(text.encode())
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            # Not JSON, or JSON Python will not parse (too deep, huge numbers):
            # answer it if it looks like a request with an id we can read.
            request_id = _salvage_request_id(text)
            if request_id is None:
                return
            if size > self.max_request_bytes:
                self._send_error(
                    request_id,
                    413,
                    f"request of {size} bytes is over the {self.max_request_bytes}-byte limit",
                )
            else:
                self._send_error(request_id, 400, "request is not valid JSON (or nests too deeply)")
            return
        if not isinstance(message, dict):
            return
        kind = protoo_message.message_kind(message)
        if kind == "request":
            request_id = message.get("id")
            if not valid_id(request_id):
                return  # cannot be answered
            await self._handle_request(request_id, message, size, on_request)
        elif kind == "response":
            self._pending.settle(message)  # False: a stray response, ignored
        elif kind == "notification":
            method, data = message.get("method"), message.get("data", {})
            if (
                isinstance(method, str)
                and isinstance(data, dict)
                and size <= self.max_request_bytes
                and _shallow(data, MAX_NESTING)
            ):
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
            if not _shallow(data, MAX_NESTING):
                raise InvalidRequestError(f"request data nests deeper than {MAX_NESTING} levels")
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
            if not self._send(protoo_message.success_response(request_id, result)):
                self._send_error(request_id, 500, "internal error (reply not serializable)")

    def _send_error(self, request_id: int | str, code: int, reason: str) -> None:
        self._send(protoo_message.error_response(request_id, code, reason))

    # ---- closing -----------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close; ``code`` 4000+ tells the client why (see docs/protocol.md)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        self._pending.fail_all(lambda: ProtooRequestError(410, "connection closed"))
        self._outgoing.put_nowait(None)
        if not self.ws.closed:
            asyncio.get_running_loop().create_task(self._close_ws())

    async def _close_ws(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer, 2.0)
        with contextlib.suppress(Exception):
            await self.ws.close(code=self.close_code, message=self.close_reason.encode()[:120])
