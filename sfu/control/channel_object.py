"""ChannelObject: the control handle on an object that lives in a worker process.

Every handle closes the same way (the one close cascade of this layer):
``close()`` by the application (and in the worker), or closed from above or
by the worker (``transportclose``, ``routerclose``, ``workerclose``,
``serverclose``). Either way its children close first, then it emits the
reason, ``observer.close`` and ``@close``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from ..channel import Channel
from ..channel.messages import Method
from ..errors import InvalidStateError

logger = logging.getLogger(__name__)

# Close requests whose answer nobody waits for; kept so they are not collected mid-flight.
_background: set[asyncio.Task[Any]] = set()


class ChannelObject(AsyncIOEventEmitter):
    """Requests go to the worker with this object's id as the target;
    notifications for that id come to :meth:`on_notification` once :meth:`attach`
    is called, when the creator has wired the handle up (those that came before
    are delivered then).

    ``observer`` is mediasoup's monitoring emitter: ``close``, and what each
    kind makes (``newrouter``, ``newtransport``, ``newproducer``, ...), for
    code that watches without owning (metrics, rooms)."""

    kind_name: str  # in messages: "transport", "producer", ...
    close_method: Method

    def __init__(self, channel: Channel, object_id: str) -> None:
        super().__init__()
        self.id = object_id
        self.closed = False
        self.observer = AsyncIOEventEmitter()
        self._channel = channel

    def attach(self) -> None:
        self._channel.register(self.id, self)

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"{self.kind_name} {self.id} is closed")

    async def _request(self, method: Method, data: Any = None) -> Any:
        self._check_open()
        return await self._channel.request(method, self.id, data)

    def _request_close(self) -> None:
        """Tell the worker to close the object, without waiting (close() is synchronous)."""
        if self._channel.closed:
            return
        task = asyncio.get_running_loop().create_task(self._close_quietly())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _close_quietly(self) -> None:
        try:
            await self._channel.request(self.close_method, self.id)
        except Exception as error:  # the worker may be gone: then so is the object
            logger.debug("%s %s: close: %r", self.close_method, self.id, error)

    def _close_children(self) -> None:
        """Close what this object owns (their worker side closes with it)."""

    def _closed(self, event: str | None = None, *args: Any) -> bool:
        """Mark closed, close the children, emit ``event`` (why), then the closes;
        False if it already was."""
        if self.closed:
            return False
        self.closed = True
        if self._channel.targets.get(self.id) is self:
            del self._channel.targets[self.id]
        self._close_children()
        if event is not None:
            self.emit(event, *args)
        self.observer.emit("close")
        self.emit("@close")
        return True

    def close(self) -> None:
        """Close it here and in the worker."""
        if not self.closed:
            self._request_close()
            self._closed()

    def transport_closed(self) -> None:
        """Its transport closed (which closed it in the worker too)."""
        self._closed("transportclose")

    def router_closed(self) -> None:
        """Its router closed (which closed it in the worker too)."""
        self._closed("routerclose")

    def on_notification(self, event: str, data: Any) -> None:
        """A notification from the media object with the same id."""
        logger.debug("%s %s: unexpected notification %s", type(self).__name__, self.id, event)
