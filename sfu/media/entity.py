"""MediaEntity: a media object the control layer names by id.

As in mediasoup's worker, each entity answers its own requests
(``handle_request``, mediasoup's ``HandleRequest``) and tells its control
handle what happened (``notify``: one channel notification to the handle
with the same id). The worker's :class:`EntityRegistry` (mediasoup's
ChannelMessageRegistrator) finds the entity a request targets.

Entities made outside a worker (unit tests) have no registry: they are
reached directly, and ``notify`` only emits locally.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyee.asyncio import AsyncIOEventEmitter

from ..channel.messages import Event, Method
from ..errors import NotFoundError

if TYPE_CHECKING:
    from ..channel import Channel


class MediaEntity(AsyncIOEventEmitter):
    id: str
    # Set when the entity is registered in a worker (see EntityRegistry.add).
    _registry: EntityRegistry | None = None

    async def handle_request(self, method: Method, data: Any) -> Any:
        """Answer a request this entity is the target of."""
        raise NotFoundError(f"{type(self).__name__} has no method {method!r}")

    def notify(self, event: Event, data: Any = None) -> None:
        """Tell the control handle (and any local listener) that ``event`` happened."""
        registry = self._registry
        if registry is not None and registry.channel is not None:
            registry.channel.notify(self.id, event, data)
        if data is None:
            self.emit(event)
        else:
            self.emit(event, data)

    def register(self, child: MediaEntity) -> None:
        """A child made by this entity becomes reachable by id, where this one is."""
        if self._registry is not None:
            self._registry.add(child)

    def emit_close(self) -> None:
        """Closed: no longer reachable by id; ``@close`` for the parent's bookkeeping."""
        if self._registry is not None:
            self._registry.remove(self)
        self.emit("@close")


class EntityRegistry:
    """The entities of one worker by id, and the channel their notifications take."""

    def __init__(self, channel: Channel | None) -> None:
        self.channel = channel
        self.entities: dict[str, MediaEntity] = {}

    def add(self, entity: MediaEntity) -> None:
        entity._registry = self
        self.entities[entity.id] = entity

    def remove(self, entity: MediaEntity) -> None:
        if self.entities.get(entity.id) is entity:
            del self.entities[entity.id]

    async def handle_request(self, method: Method, target: str, data: Any) -> Any:
        entity = self.entities.get(target)
        if entity is None:
            if method.is_close:
                return None  # already gone: closing is idempotent
            raise NotFoundError(f"{method.partition('.')[0]} {target} not found")
        return await entity.handle_request(method, data)
