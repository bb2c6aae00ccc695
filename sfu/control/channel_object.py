"""ChannelObject: the signaling side's handle on an object that lives in a worker process."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from ..channel import Channel

logger = logging.getLogger(__name__)

# Close requests whose answer nobody waits for; kept so they are not collected mid-flight.
_background: set[asyncio.Task[Any]] = set()


class ChannelObject(AsyncIOEventEmitter):
    """Requests go to ``<prefix>.<method>`` with this object's id as the target;
    notifications for that id come to :meth:`on_notification` once :meth:`attach`
    is called, when the creator has wired the handle up (those that came before
    are delivered then)."""

    prefix = ""

    def __init__(self, channel: Channel, object_id: str) -> None:
        super().__init__()
        self.id = object_id
        self.closed = False
        self._channel = channel

    def attach(self) -> None:
        self._channel.register(self.id, self)

    async def _request(self, method: str, data: dict[str, Any] | None = None) -> Any:
        return await self._channel.request(f"{self.prefix}.{method}", self.id, data)

    def _request_close(self) -> None:
        """Tell the worker to close the object, without waiting (close() is synchronous)."""
        if self._channel.closed:
            return
        task = asyncio.get_running_loop().create_task(self._close_quietly())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _close_quietly(self) -> None:
        try:
            await self._request("close")
        except Exception as error:  # the worker may be gone: then so is the object
            logger.debug("%s %s: close: %r", self.prefix, self.id, error)

    def _mark_closed(self) -> bool:
        """Mark closed and stop taking notifications; False if it already was."""
        if self.closed:
            return False
        self.closed = True
        if self._channel.targets.get(self.id) is self:
            del self._channel.targets[self.id]
        return True

    def close(self) -> None:
        """Close it here and in the worker."""
        if self._mark_closed():
            self._request_close()
            self.emit("@close")

    def transport_closed(self) -> None:
        """Its transport closed (which closed it in the worker too)."""
        if self._mark_closed():
            self.emit("transportclose")
            self.emit("@close")

    def on_notification(self, event: str, data: Any) -> None:
        raise NotImplementedError
