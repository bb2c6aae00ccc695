"""WorkerPool: the worker processes of a server, room placement, and replacement of dead workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from ..channel import ChannelTimeoutError
from ..config import MediaConfig
from ..errors import SfuError
from .worker import Worker

logger = logging.getLogger(__name__)

# A worker that keeps dying is restarted at most this often.
RESTART_BACKOFF = (0.0, 1.0, 2.0, 5.0, 10.0)
# Every worker is asked for its stats this often; one that has not answered for
# HEARTBEAT_LIMIT seconds hangs (a deadlock, SIGSTOP, swapping) and is killed, so
# that its peers rejoin on a working one instead of waiting forever.
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_LIMIT = 6.0


class NoWorkerError(SfuError):
    """Every worker is down (they are being restarted): try again shortly."""

    code = 503


class WorkerPool(AsyncIOEventEmitter):
    """Events: ``workerdied(worker)``, ``workerstarted(worker)``."""

    def __init__(
        self,
        count: int,
        settings: MediaConfig,
        *,
        log_level: str = "info",
        log_format: str = "text",
        event_loop: str = "uvloop",
        in_process: bool = False,
    ) -> None:
        super().__init__()
        self.count = count
        self.settings = settings
        self.workers: dict[int, Worker] = {}
        self.closed = False
        self.restarts = 0
        self._worker_options: dict[str, Any] = {
            "log_level": log_level,
            "log_format": log_format,
            "event_loop": event_loop,
            "in_process": in_process,
        }
        # Media counters of workers that are gone, so /metrics totals never go down.
        self.retired_totals: Counter[str] = Counter()
        self.retired_cpu_seconds = 0.0
        self._deaths: dict[int, list[float]] = {}
        self._restart_tasks: set[asyncio.Task[None]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        started = await asyncio.gather(
            *(self._start_worker(index) for index in range(self.count)), return_exceptions=True
        )
        failures = [r for r in started if isinstance(r, BaseException)]
        if failures:
            await self.close()
            raise failures[0]
        self._heartbeat_task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while not self.closed:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                await self._check_workers()
            except Exception:
                logger.exception("worker heartbeat failed")

    async def _check_workers(self) -> None:
        workers = self.live_workers()
        results = await asyncio.gather(
            *(w.get_stats(response_timeout=HEARTBEAT_LIMIT) for w in workers),
            return_exceptions=True,
        )
        for worker, result in zip(workers, results, strict=True):
            # Only silence means a hung worker: an error reply comes from a live one.
            if isinstance(result, ChannelTimeoutError) and not worker.closed:
                worker.kill(f"no answer to a heartbeat in {HEARTBEAT_LIMIT:.0f} s ({result})")

    async def _start_worker(self, index: int) -> Worker:
        worker = Worker(index, self.settings, **self._worker_options)
        await worker.start()
        if self.closed:
            await worker.close()
            raise NoWorkerError("the server is shutting down")
        self.workers[index] = worker
        worker.on("died", lambda exit_code: self._on_died(worker, exit_code))
        self.emit("workerstarted", worker)
        return worker

    def live_workers(self) -> list[Worker]:
        return [w for w in self.workers.values() if not w.closed]

    def least_loaded(self, exclude: Iterable[Worker] = ()) -> Worker:
        """The live worker with the fewest producers + consumers, then the fewest routers."""
        excluded = set(map(id, exclude))
        candidates = [w for w in self.live_workers() if id(w) not in excluded]
        if not candidates:
            raise NoWorkerError("no media worker is available right now; try again shortly")
        return min(candidates, key=lambda w: (*w.load(), w.index))

    # ---- dead workers -----------------------------------------------------------

    def _on_died(self, worker: Worker, exit_code: int | None) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        self._retire(worker)
        self.emit("workerdied", worker)
        if self.closed:
            return
        deaths = self._deaths.setdefault(worker.index, [])
        now = time.monotonic()
        deaths[:] = [t for t in deaths if now - t < 60.0] + [now]
        delay = RESTART_BACKOFF[min(len(deaths) - 1, len(RESTART_BACKOFF) - 1)]
        task = asyncio.create_task(self._replace(worker.index, delay))
        self._restart_tasks.add(task)
        task.add_done_callback(self._restart_tasks.discard)

    def _retire(self, worker: Worker) -> None:
        stats = worker.last_stats
        self.retired_totals.update(stats.get("totals") or {})
        self.retired_cpu_seconds += (stats.get("process") or {}).get("cpuSeconds", 0.0)

    async def _replace(self, index: int, delay: float) -> None:
        await asyncio.sleep(delay)
        while not self.closed:
            try:
                worker = await self._start_worker(index)
            except Exception as error:
                logger.error("worker %d: restart failed: %s; retrying in 5 s", index, error)
                await asyncio.sleep(5.0)
                continue
            self.restarts += 1
            logger.warning("worker %d replaced (new pid %d)", index, worker.pid)
            return

    # ---- stats -------------------------------------------------------------------

    async def refresh_stats(self, response_timeout: float = 1.0) -> list[dict[str, Any]]:
        """Fresh stats of every live worker (one that does not answer at once keeps its last:
        /health and /metrics stay fast while a worker hangs)."""
        workers = self.live_workers()
        results = await asyncio.gather(
            *(w.get_stats(response_timeout) for w in workers), return_exceptions=True
        )
        return [
            w.last_stats if isinstance(result, BaseException) else result
            for w, result in zip(workers, results, strict=True)
        ]

    def media_totals(self) -> Counter[str]:
        totals = Counter(self.retired_totals)
        for worker in self.live_workers():
            totals.update(worker.last_stats.get("totals") or {})
        return totals

    def counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for worker in self.live_workers():
            counts.update(worker.last_stats.get("counts") or {})
        return counts

    async def close(self) -> None:
        self.closed = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        for task in self._restart_tasks:
            task.cancel()
        workers = list(self.workers.values())
        self.workers.clear()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
