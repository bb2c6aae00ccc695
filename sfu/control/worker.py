"""Worker: one media worker process and its channel, seen from the signaling process.

mediasoup runs a C++ worker per core; ours are Python processes running
``sfu.media.worker_process``. Each owns its routers, transports and sockets.
The channel closing without our asking means the process died: its routers
close (``workerclose``) and the pool starts a replacement.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from pyee.asyncio import AsyncIOEventEmitter

from ..channel import Channel
from ..channel.messages import Created, CreateRouterRequest, Method, WorkerStarted
from ..config import MediaConfig
from ..errors import InvalidStateError
from . import ortc
from .router import Router

if TYPE_CHECKING:
    from ..media.worker import Worker as MediaWorker

logger = logging.getLogger(__name__)


def worker_settings(settings: MediaConfig, index: int) -> MediaConfig:
    """Worker ``index``'s media settings: in single-port mode, its own port (udp_port + index)."""
    if settings.udp_port:
        return dataclasses.replace(settings, udp_port=settings.udp_port + index)
    return settings


def worker_environment(settings: MediaConfig) -> dict[str, str]:
    """A worker process's environment: ``sfu.media.fastpath`` takes its switches
    from these variables when it is imported, before the worker reads its
    settings, so the configured values travel here."""
    return {
        **os.environ,
        "SFU_NATIVE_SEND": "1" if settings.native_send else "0",
        "SFU_NATIVE_RECEIVE": "1" if settings.native_receive else "0",
    }


class Worker(AsyncIOEventEmitter):
    """Events: ``died(exit_code)`` (it ended without being closed), ``@close``.
    ``observer`` (monitoring, as mediasoup's): ``newrouter(router)``, ``close``."""

    def __init__(
        self,
        index: int,
        settings: MediaConfig,
        *,
        log_level: str = "info",
        log_format: str = "text",
        event_loop: str = "uvloop",
        in_process: bool = False,
    ) -> None:
        super().__init__()
        self.index = index
        self.settings = worker_settings(settings, index)
        self.closed = False
        self.pid = 0
        self.id = ""
        self.routers: dict[str, Router] = {}
        self.observer = AsyncIOEventEmitter()
        self.last_stats: dict[str, Any] = {}
        self._log_level = log_level
        self._log_format = log_format
        self._event_loop = event_loop
        self._in_process = in_process
        self._process: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        # In-process workers (tests): the media side, to reach its objects.
        self.local_worker: MediaWorker | None = None

    @property
    def channel(self) -> Channel:
        if self._channel is None:
            raise InvalidStateError(f"worker {self.index} is not started")
        return self._channel

    async def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self._in_process:
                # The media plane in this process: only tests ask for it.
                from ..media.worker_process import serve

                def started(worker: MediaWorker) -> None:
                    self.local_worker = worker

                self._tasks.append(asyncio.create_task(serve(theirs, self.settings, started)))
            else:
                settings = json.dumps(dataclasses.asdict(self.settings))
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "sfu.media.worker_process",
                    "--fd",
                    str(theirs.fileno()),
                    "--settings",
                    settings,
                    "--log-level",
                    self._log_level,
                    "--log-format",
                    self._log_format,
                    "--event-loop",
                    self._event_loop,
                    pass_fds=(theirs.fileno(),),
                    env=worker_environment(self.settings),
                )
                theirs.close()
            self._channel = await Channel.over_socket(ours)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        self._tasks.append(asyncio.create_task(self._watch(self._channel)))
        try:
            info: WorkerStarted = await self._channel.request(
                Method.WORKER_START, response_timeout=60
            )
        except BaseException:  # cancelled too (the pool closing): leave no process behind
            await self.close()
            raise
        self.pid = int(info["pid"])
        self.id = str(info["id"])
        logger.info("worker %d started (pid %d)", self.index, self.pid)

    async def _watch(self, channel: Channel) -> None:
        try:
            await channel.run()
        except Exception:
            logger.exception("worker %d: its channel broke", self.index)
        if self.closed:
            return
        routers = len(self.routers)
        exit_code: int | None = None
        try:
            # Unusable from now on: nothing is placed on it while it is reaped.
            self._closed()
        except Exception:
            logger.exception("worker %d: closing its routers failed", self.index)
        finally:
            if self._process is not None:
                try:
                    exit_code = await asyncio.wait_for(self._process.wait(), 5)
                except TimeoutError:  # alive but unreachable: it cannot be used any more
                    with contextlib.suppress(ProcessLookupError):
                        self._process.kill()
                    exit_code = await self._process.wait()
            logger.error(
                "worker %d (pid %d) died (exit code %s); closed its %d routers",
                self.index,
                self.pid,
                exit_code,
                routers,
            )
            self.emit("died", exit_code)
            self.observer.emit("close")
            self.emit("@close")

    def _closed(self) -> None:
        self.closed = True
        for router in list(self.routers.values()):
            try:
                router.worker_closed()
            except Exception:  # one room's failure must not keep the others open
                logger.exception("worker %d: closing router %s failed", self.index, router.id)
        self.routers.clear()

    async def create_router(
        self, *, media_codecs: list[dict[str, Any]], app_data: dict[str, Any] | None = None
    ) -> Router:
        if self.closed:
            raise InvalidStateError(f"worker {self.index} is closed")
        app_data = app_data or {}
        # ORTC runs here, as in mediasoup's Worker.ts: the worker never sees the codecs list.
        rtp_capabilities = ortc.generate_router_rtp_capabilities(media_codecs)
        info: Created = await self.channel.request(
            Method.WORKER_CREATE_ROUTER, data=CreateRouterRequest(appData=app_data)
        )
        router = Router(self, info["id"], rtp_capabilities, app_data)
        if self.closed:
            router.worker_closed()
            raise InvalidStateError(f"worker {self.index} closed")
        self.routers[router.id] = router
        router.on("@close", lambda: self.routers.pop(router.id, None))
        self.observer.emit("newrouter", router)
        return router

    async def get_stats(self, response_timeout: float = 5.0) -> dict[str, Any]:
        stats: dict[str, Any] = await self.channel.request(
            Method.WORKER_GET_STATS, response_timeout=response_timeout
        )
        self.last_stats = stats
        return stats

    def kill(self, reason: str) -> None:
        """SIGKILL a worker that cannot be used (it hangs); the death is handled as any other."""
        if self._process is None or self._process.returncode is not None:
            return
        logger.error("worker %d (pid %d): %s; killing it", self.index, self.pid, reason)
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()

    def load(self) -> tuple[int, int]:
        """(open producers + consumers, routers): what placement compares."""
        streams = sum(
            len(t.producers) + len(t.consumers)
            for r in self.routers.values()
            for t in r.transports.values()
        )
        return streams, len(self.routers)

    async def close(self) -> None:
        """Close the channel; the process exits when it sees that."""
        if self.closed:
            return
        self._closed()
        if self._channel is not None:
            self._channel.close()
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                logger.warning("worker %d did not exit; killing it", self.index)
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()
        for task in self._tasks:
            if not task.done():
                with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                    await asyncio.wait_for(task, 2)
        self.observer.emit("close")
        self.emit("@close")
