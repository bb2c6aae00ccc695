"""Recorder: the recorder process and its channel, seen from the signalling process.

Started on the first recording and supervised like a media worker
(``sfu.control.worker``): a socket pair, ``python -m sfu.recorder.recorder_process``
with one end, and a process that exits when the channel closes. If it dies,
its recordings end (their files decode up to the last flushed second) and the
next recording starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Mapping
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from ..channel import Channel
from ..config import RecordingConfig
from ..recording.messages import RecorderMethod

logger = logging.getLogger(__name__)


class Recorder(AsyncIOEventEmitter):
    """Events: ``died(exit_code)``. Notifications for a room reach ``channel.targets[room id]``."""

    def __init__(
        self, settings: RecordingConfig, *, listen_ip: str, log_level: str, log_format: str
    ) -> None:
        super().__init__()
        self.settings = settings
        self._listen_ip = listen_ip
        self._log_level = log_level
        self._log_format = log_format
        self._process: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._starting: asyncio.Task[Channel] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.pid = 0
        self.closed = False

    async def channel(self) -> Channel:
        """The running process's channel (started now if there is none)."""
        if self._channel is not None and not self._channel.closed:
            return self._channel
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> Channel:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sfu.recorder.recorder_process",
                "--fd",
                str(theirs.fileno()),
                "--free-space-floor",
                str(self.settings.free_space_floor_mb * 2**20),
                "--listen-ip",
                self._listen_ip,
                "--log-level",
                self._log_level,
                "--log-format",
                self._log_format,
                pass_fds=(theirs.fileno(),),
            )
            theirs.close()
            channel = await Channel.over_socket(ours)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        self._watch_task = asyncio.create_task(self._watch(channel))
        info = await channel.request(RecorderMethod.START, response_timeout=60)
        self.pid = int(info["pid"])
        logger.info("recorder started (pid %d)", self.pid)
        self._channel = channel
        return channel

    async def _watch(self, channel: Channel) -> None:
        try:
            await channel.run()
        except Exception:
            logger.exception("recorder: its channel broke")
        if self.closed or self._process is None:
            return
        process = self._process
        try:
            exit_code = await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            exit_code = await process.wait()
        logger.error("recorder (pid %d) died (exit code %s)", self.pid, exit_code)
        self.emit("died", exit_code)

    async def request(
        self, method: RecorderMethod, target: str = "", data: Mapping[str, Any] | None = None
    ) -> Any:
        channel = await self.channel()
        return await channel.request(method, target, data)

    async def close(self) -> None:
        """Close the channel: the process closes its files and exits."""
        self.closed = True
        if self._channel is not None:
            self._channel.close()
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                logger.warning("the recorder did not exit; killing it")
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()
        if self._watch_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._watch_task, 2)
