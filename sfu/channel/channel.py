"""Channel: messages between the signaling process and one worker process.

A frame is a 4-byte big-endian length and a UTF-8 JSON object, over a Unix
socket pair (mediasoup's first channel was netstrings of JSON; this is the
same idea with a binary length). Three shapes:

- request (signaling → worker): ``{"id": 7, "method": "transport.consume", "target": ID, "data": {}}``
- response: ``{"id": 7, "data": ...}`` or
  ``{"id": 7, "error": "NotFoundError", "code": 404, "reason": "..."}``
- notification (worker → signaling): ``{"target": ID, "event": "producerclose", "data": ...}``

Control messages are rare (a few per join); media never crosses the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from .. import errors
from ..errors import SfuError

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024
# Notifications for an id with no handle yet are kept this long (and at most this
# many): a worker may notify about an object right after the response creating it,
# before the requester has built its handle.
ORPHAN_SECONDS = 10.0
MAX_ORPHANS = 1000
_LENGTH = struct.Struct("!I")

RequestHandler = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class ChannelClosedError(SfuError):
    """The worker process is gone (it crashed or was killed): the request cannot complete."""

    code = 503


class ChannelTimeoutError(ChannelClosedError):
    """The worker did not answer in time (it may hang)."""


class NotificationTarget(Protocol):
    def on_notification(self, event: str, data: Any) -> None: ...


def _error_class(name: str) -> type[SfuError]:
    found = getattr(errors, name, None)
    if isinstance(found, type) and issubclass(found, SfuError):
        return found
    return SfuError


class Channel:
    """One end of the channel. The signaling end sends requests and receives
    notifications; the worker end answers requests and sends notifications."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.targets: dict[str, NotificationTarget] = {}
        self._orphans: OrderedDict[str, tuple[float, list[tuple[str, Any]]]] = OrderedDict()
        self.closed = False

    @classmethod
    async def over_socket(cls, sock: Any) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME_BYTES)
        return cls(reader, writer)

    # ---- sending --------------------------------------------------------------

    def _write(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise ChannelClosedError("the worker channel is closed")
        body = json.dumps(message, separators=(",", ":")).encode()
        self._writer.write(_LENGTH.pack(len(body)) + body)

    async def request(
        self,
        method: str,
        target: str = "",
        data: Mapping[str, Any] | None = None,
        response_timeout: float = 15.0,
    ) -> Any:
        """Send a request and wait for its response; typed errors are raised again here."""
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._write({"id": request_id, "method": method, "target": target, "data": data or {}})
            return await asyncio.wait_for(future, response_timeout)
        except TimeoutError:
            raise ChannelTimeoutError(
                f"the worker did not answer {method} in {response_timeout:.0f} s"
            ) from None
        finally:
            self._pending.pop(request_id, None)

    def notify(self, target: str, event: str, data: Any = None) -> None:
        if not self.closed:
            self._write({"target": target, "event": event, "data": data})

    # ---- receiving -------------------------------------------------------------

    async def _read_message(self) -> dict[str, Any] | None:
        try:
            header = await self._reader.readexactly(_LENGTH.size)
            (length,) = _LENGTH.unpack(header)
            if length > MAX_FRAME_BYTES:
                raise ValueError(f"frame of {length} bytes")
            body = await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        message = json.loads(body)
        if not isinstance(message, dict):
            raise ValueError("a frame that is not a JSON object")
        return message

    async def run(self, handle_request: RequestHandler | None = None) -> None:
        """Read until the other end goes away. Requests are answered in order."""
        try:
            while True:
                message = await self._read_message()
                if message is None:
                    return
                if "method" in message:
                    await self._answer(message, handle_request)
                elif "event" in message:
                    self._deliver(message)
                else:
                    self._resolve(message)
        finally:
            self.close()

    async def _answer(self, message: dict[str, Any], handle_request: RequestHandler | None) -> None:
        request_id = message.get("id")
        try:
            if handle_request is None:
                raise errors.NotFoundError("this end of the channel takes no requests")
            data = await handle_request(
                str(message["method"]), str(message.get("target") or ""), message.get("data") or {}
            )
            reply: dict[str, Any] = {"id": request_id, "data": data}
        except SfuError as error:
            reply = {
                "id": request_id,
                "error": type(error).__name__,
                "code": error.code,
                "reason": str(error),
            }
        except Exception as error:
            logger.exception("worker: request %s failed", message.get("method"))
            reply = {"id": request_id, "error": "SfuError", "reason": f"internal error: {error!r}"}
        with contextlib.suppress(ChannelClosedError):
            self._write(reply)

    def _resolve(self, message: dict[str, Any]) -> None:
        future = self._pending.get(message.get("id", -1))
        if future is None or future.done():
            return
        if "error" in message:
            error_class = _error_class(message["error"])
            error = error_class(message.get("reason", ""))
            code = message.get("code")
            if error_class is SfuError and isinstance(code, int):
                error.code = code  # a worker-side error type without a twin here
            future.set_exception(error)
        else:
            future.set_result(message.get("data"))

    def register(self, target_id: str, target: NotificationTarget) -> None:
        """Route notifications for ``target_id`` to ``target``, those already here first."""
        self.targets[target_id] = target
        early = self._orphans.pop(target_id, None)
        for event, data in early[1] if early else ():
            self._notify_target(target, event, data)

    def _deliver(self, message: dict[str, Any]) -> None:
        target_id = str(message.get("target", ""))
        event, data = str(message.get("event")), message.get("data")
        target = self.targets.get(target_id)
        if target is not None:
            self._notify_target(target, event, data)
            return
        # No handle (yet, or any more): keep it briefly, bounded.
        now = time.monotonic()
        while self._orphans and (
            len(self._orphans) >= MAX_ORPHANS
            or now - next(iter(self._orphans.values()))[0] > ORPHAN_SECONDS
        ):
            self._orphans.popitem(last=False)
        self._orphans.setdefault(target_id, (now, []))[1].append((event, data))

    @staticmethod
    def _notify_target(target: NotificationTarget, event: str, data: Any) -> None:
        try:
            target.on_notification(event, data)
        except Exception:
            logger.exception("worker notification %s failed", event)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosedError("the worker process exited"))
        self._pending.clear()
        with contextlib.suppress(Exception):
            self._writer.close()
