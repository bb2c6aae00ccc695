"""A protoo peer (client side) over an aiohttp WebSocket.

The message shapes are in :mod:`sfu.signaling.protoo_message`, shared with the server.

Incoming requests are answered in their own tasks, so a slow handler (the
server's ``newConsumer``) never blocks the reader. Notifications are
dispatched in arrival order from the reader itself; a notification handler
that returns an awaitable has it run in a task.

Once closed, :attr:`ProtooConnection.close_code` and
:attr:`ProtooConnection.close_reason` tell how: the code and reason of the
server's close frame, or None and "" when the connection died without one
(a network failure), and :attr:`ProtooConnection.closed_locally` whether
:meth:`ProtooConnection.close` ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from sfu.signaling import protoo_message
from sfu.signaling.protoo_message import PendingRequests

__all__ = [
    "NotificationHandler",
    "ProtooConnection",
    "ProtooError",
    "RequestHandler",
]

logger = logging.getLogger(__name__)

# Well above any request the server accepts; the server sets its own cap.
_MAX_MSG_SIZE = 16 * 1024 * 1024

RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]
NotificationHandler = Callable[[dict[str, Any]], Awaitable[None] | None]


class ProtooError(Exception):
    """An error response (``ok: false``) from the remote peer, or one to send back.

    Raise it from a request handler to answer with that code and reason.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def _as_dict(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


class ProtooConnection:
    """One protoo WebSocket connection. Create it with :meth:`connect`."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._ws = ws
        # Owned session (closed with the connection), if connect() created it.
        self._session = session
        self._pending = PendingRequests(ProtooError)
        self._request_handlers: dict[str, RequestHandler] = {}
        self._notification_handlers: dict[str, NotificationHandler] = {}
        self._default_notification_handler: Callable[[str, dict[str, Any]], Any] | None = None
        self._close_callbacks: list[Callable[[], Any]] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        # Outgoing frames go out one at a time, in the order they were queued.
        self._send_lock = asyncio.Lock()
        self._closed_event = asyncio.Event()
        self._closing = False
        self._finishing = False
        self._closed_locally = False
        self._close_code: int | None = None
        self._close_reason = ""
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
        ssl: Any = True,
        heartbeat: float | None = None,
    ) -> ProtooConnection:
        """Open ``url`` with the ``protoo`` subprotocol.

        If ``session`` is None a session is created and closed with the connection.
        """
        owned = session is None
        sess = session if session is not None else aiohttp.ClientSession()
        try:
            ws = await asyncio.wait_for(
                sess.ws_connect(
                    url,
                    protocols=("protoo",),
                    timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                    max_msg_size=_MAX_MSG_SIZE,
                    ssl=ssl,
                    heartbeat=heartbeat,
                ),
                timeout,
            )
            if ws.protocol != "protoo":
                await ws.close()
                raise ConnectionError(
                    f"server did not accept the protoo subprotocol (got {ws.protocol!r})"
                )
        except BaseException:
            if owned:
                await sess.close()
            raise
        return cls(ws, sess if owned else None)

    # --- state ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed_event.is_set()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    @property
    def close_code(self) -> int | None:
        """The code of the close frame the server sent; None if it sent none."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        """The reason in the server's close frame ("" if none)."""
        return self._close_reason

    @property
    def closed_locally(self) -> bool:
        """Whether :meth:`close` was called (before the server closed the connection)."""
        return self._closed_locally

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the connection is closed (by either side)."""
        self._close_callbacks.append(callback)

    def copy_handlers_from(self, other: ProtooConnection) -> None:
        """Take over ``other``'s request and notification handlers (not its close callbacks)."""
        self._request_handlers.update(other._request_handlers)
        self._notification_handlers.update(other._notification_handlers)
        if other._default_notification_handler is not None:
            self._default_notification_handler = other._default_notification_handler

    # --- handlers ------------------------------------------------------------

    def on_request(self, method: str, handler: RequestHandler) -> None:
        """Answer incoming requests for ``method`` with ``await handler(data)``.

        The handler returns the response data (None means ``{}``) or raises
        :class:`ProtooError`; any other exception is answered with code 500.
        """
        self._request_handlers[method] = handler

    def on_notification(self, method: str, handler: NotificationHandler) -> None:
        self._notification_handlers[method] = handler

    def on_any_notification(self, handler: Callable[[str, dict[str, Any]], Any]) -> None:
        """Called as ``handler(method, data)`` for notifications with no specific handler."""
        self._default_notification_handler = handler

    # --- outgoing ------------------------------------------------------------

    async def request(
        self,
        method: str,
        data: Mapping[str, Any] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Any:
        """Send a request; return the response data (any JSON value: an object for
        most methods, a list for the stats requests).

        Raises :class:`ProtooError` on ``ok: false``, ``asyncio.TimeoutError``
        after ``timeout`` seconds and ``ConnectionError`` if the connection is
        or gets closed.
        """
        if self.closed or self._closing:
            raise ConnectionError("protoo connection closed")
        request_id, future = self._pending.add()
        try:
            await self._send(protoo_message.request(request_id, method, data))
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.discard(request_id)

    async def notify(self, method: str, data: Mapping[str, Any] | None = None) -> None:
        if self.closed or self._closing:
            raise ConnectionError("protoo connection closed")
        await self._send(protoo_message.notification(method, data))

    async def _send(self, message: dict[str, Any]) -> None:
        text = protoo_message.encode(message)
        async with self._send_lock:
            if self._ws.closed:
                raise ConnectionError("protoo connection closed")
            await self._ws.send_str(text)

    # --- incoming ------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await self._ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._dispatch(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    logger.warning("protoo: ignoring a binary frame")
                elif msg.type == aiohttp.WSMsgType.CLOSE:
                    # The server's close frame (aiohttp has answered it).
                    if not self._closed_locally:
                        self._close_code = msg.data if isinstance(msg.data, int) else None
                        self._close_reason = msg.extra if isinstance(msg.extra, str) else ""
                    break
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    logger.warning("protoo: websocket error: %s", self._ws.exception())
                    break
                elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("protoo: reader failed")
        finally:
            await self._finish()

    def _dispatch(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            logger.warning("protoo: ignoring a non-JSON frame")
            return
        if not isinstance(message, dict):
            logger.warning("protoo: ignoring a non-object frame")
            return
        kind = protoo_message.message_kind(message)
        if kind == "response":
            if not self._pending.settle(message):
                logger.debug("protoo: ignoring a stray response id=%r", message.get("id"))
        elif kind == "request":
            self._handle_request(message)
        elif kind == "notification":
            self._handle_notification(message)
        else:
            logger.warning("protoo: ignoring a frame that is no protoo message")

    def _handle_request(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        method = message.get("method")
        if not protoo_message.valid_id(request_id) or not isinstance(method, str):
            logger.warning("protoo: ignoring a request without id or method")
            return
        self._spawn(self._answer(request_id, method, _as_dict(message.get("data"))))

    async def _answer(self, request_id: int | str, method: str, data: dict[str, Any]) -> None:
        handler = self._request_handlers.get(method)
        response: dict[str, Any]
        try:
            if handler is None:
                raise ProtooError(501, f"unknown method {method!r}")
            response = protoo_message.success_response(request_id, await handler(data))
        except ProtooError as exc:
            response = protoo_message.error_response(request_id, exc.code, exc.reason)
        except Exception as exc:
            logger.exception("protoo: request handler for %r failed", method)
            response = protoo_message.error_response(
                request_id, 500, str(exc) or type(exc).__name__
            )
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await self._send(response)

    def _handle_notification(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if not isinstance(method, str):
            logger.warning("protoo: ignoring a notification without method")
            return
        data = _as_dict(message.get("data"))
        handler = self._notification_handlers.get(method)
        try:
            if handler is not None:
                result: Any = handler(data)
            elif self._default_notification_handler is not None:
                result = self._default_notification_handler(method, data)
            else:
                logger.debug("protoo: unhandled notification %r", method)
                return
        except Exception:
            logger.exception("protoo: notification handler for %r failed", method)
            return
        if inspect.isawaitable(result):
            self._spawn(result, f"notification handler for {method!r}")

    def _spawn(self, awaitable: Awaitable[Any], label: str | None = None) -> None:
        # The awaitable itself becomes the task: cancelled before it starts
        # (the connection closed), a coroutine is closed without a warning.
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)

        def done(task: asyncio.Future[Any]) -> None:
            self._tasks.discard(task)
            if label is not None and not task.cancelled() and task.exception() is not None:
                logger.error("protoo: %s failed", label, exc_info=task.exception())

        task.add_done_callback(done)

    # --- closing -------------------------------------------------------------

    def abort(self) -> None:
        """Drop the TCP connection at once, without a WebSocket close frame.

        What a network failure looks like to both sides (the server keeps a
        joined peer for its grace period). For tests and for a client that
        knows its network changed.
        """
        # aiohttp has no public way to reach the socket's transport.
        connection = self._ws._response.connection
        transport = connection.transport if connection is not None else None
        if transport is not None:
            transport.abort()

    async def close(self) -> None:
        """Close the WebSocket, fail pending requests, cancel running handlers."""
        if not self._finishing:
            self._closed_locally = True
        self._closing = True
        with contextlib.suppress(Exception):
            await self._ws.close()
        # Closing the socket ends the reader's loop; cancel it if it lingers.
        if not self._reader.done() and self._reader is not asyncio.current_task():
            await asyncio.wait({self._reader}, timeout=2.0)
            if not self._reader.done():
                self._reader.cancel()
        await self._finish()

    async def _finish(self) -> None:
        if self._finishing:
            await self._closed_event.wait()
            return
        self._finishing = True
        self._closing = True
        try:
            self._pending.fail_all(lambda: ConnectionError("protoo connection closed"))
            current = asyncio.current_task()
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            if not self._ws.closed:
                with contextlib.suppress(Exception):
                    await self._ws.close()
            if self._session is not None:
                with contextlib.suppress(Exception):
                    await self._session.close()
        finally:
            self._closed_event.set()
        for callback in self._close_callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    self._spawn(result, "close callback")
            except Exception:
                logger.exception("protoo: close callback failed")
