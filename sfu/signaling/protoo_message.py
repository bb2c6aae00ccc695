"""protoo's message shapes, shared by the server (``sfu.signaling.protoo``) and the client.

- request: ``{request: true, id, method, data}``
- success: ``{response: true, id, ok: true, data}``
- failure: ``{response: true, id, ok: false, errorCode, errorReason}``
- notification: ``{notification: true, method, data}``

Standard library only: the client imports this without the server's aiohttp
side, and neither end writes these dicts by hand.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeGuard

__all__ = [
    "MessageKind",
    "PendingRequests",
    "encode",
    "error_response",
    "message_kind",
    "notification",
    "request",
    "success_response",
    "valid_id",
]

MessageKind = Literal["request", "response", "notification"]

# Ids wrap before they outgrow a signed 32-bit integer (some peers parse them as one).
_MAX_ID = 2**31


def valid_id(value: object) -> TypeGuard[int | str]:
    """Whether ``value`` can be a message id (a bool is no id, though JSON would allow it)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def request(request_id: int, method: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"request": True, "id": request_id, "method": method, "data": _data(data)}


def success_response(request_id: int | str, data: Any) -> dict[str, Any]:
    return {"response": True, "id": request_id, "ok": True, "data": data or {}}


def error_response(request_id: int | str, code: int, reason: str) -> dict[str, Any]:
    return {
        "response": True,
        "id": request_id,
        "ok": False,
        "errorCode": code,
        "errorReason": reason,
    }


def notification(method: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"notification": True, "method": method, "data": _data(data)}


def encode(message: Mapping[str, Any]) -> str:
    """The compact JSON text of a message (raises ValueError or TypeError if it has none).
    Typed values with a ``to_wire()`` (sfu.models' RTP model) go out as their wire dicts."""
    return json.dumps(message, separators=(",", ":"), default=_wire)


def _wire(value: object) -> Any:
    # Duck-typed, so this module still imports only the standard library.
    to_wire = getattr(value, "to_wire", None)
    if not callable(to_wire):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return to_wire()


def message_kind(message: Mapping[str, Any]) -> MessageKind | None:
    """Which protoo message a decoded JSON object is, or None if it is none of them."""
    if message.get("request") is True:
        return "request"
    if message.get("response") is True:
        return "response"
    if message.get("notification") is True:
        return "notification"
    return None


def _data(data: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(data) if data else {}


class PendingRequests:
    """The requests one end sent and has no answer for yet, by id.

    ``error(code, reason)`` makes the exception an ``ok: false`` answer raises
    (each end has its own error class).
    """

    def __init__(self, error: Callable[[int, str], Exception]) -> None:
        self._error = error
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._next_id = random.randint(1, 1_000_000)

    def add(self) -> tuple[int, asyncio.Future[Any]]:
        """A fresh id and the future its response settles."""
        request_id = self._next_id
        self._next_id = self._next_id + 1 if self._next_id < _MAX_ID else 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        return request_id, future

    def discard(self, request_id: int) -> None:
        self._futures.pop(request_id, None)

    def settle(self, message: Mapping[str, Any]) -> bool:
        """Settle the request a response answers; False for a stray response (ignore it)."""
        response_id = message.get("id")
        # Ours are ints; any other id (a string, a bool, a list) is somebody else's.
        future = self._futures.get(response_id) if type(response_id) is int else None
        if future is None or future.done():
            return False
        if message.get("ok") is True:
            data = message.get("data")
            # Stats replies are arrays (as in mediasoup): pass any JSON through.
            future.set_result({} if data is None else data)
        else:
            code = message.get("errorCode")
            reason = message.get("errorReason")
            future.set_exception(
                self._error(
                    code if isinstance(code, int) and not isinstance(code, bool) else 500,
                    reason if isinstance(reason, str) else "request rejected",
                )
            )
        return True

    def fail_all(self, error: Callable[[], Exception]) -> None:
        """The connection is gone: every request still waiting raises ``error()``."""
        for future in self._futures.values():
            if not future.done():
                future.set_exception(error())
        self._futures.clear()
