"""A load process: runs several load clients on one event loop, driven over a pipe.

The coordinator (:mod:`sfu_bench.scenarios`) starts it with
:func:`start_workers` and talks to it through :class:`WorkerHandle`. Every
command carries an ``id`` that its reply repeats:

- ``join {clients}``: start these clients (a few at a time); the reply comes
  when all of them have joined or failed;
- ``snapshot {record?}``: counters now (and start or stop recording latency);
- ``report``: latency samples, join times, failures;
- ``stop``: close every client and exit.

A load process stops by itself at its deadline (``max_seconds``) or when the
coordinator goes away (the pipe closes), whatever it was doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["WorkerError", "WorkerHandle", "start_workers"]

JOIN_TIMEOUT = 45.0


class WorkerError(RuntimeError):
    pass


def _worker_main(conn: multiprocessing.connection.Connection, config: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.ERROR, format="load %(process)d %(name)s: %(message)s")
    # Closing hundreds of clients at once may outlast a client's close timeout; the
    # "unclosed session" reports that follow at exit are noise here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_Worker(conn, config).run())
    conn.close()


class _Worker:
    def __init__(self, conn: multiprocessing.connection.Connection, config: dict[str, Any]) -> None:
        from sfu.aiortc_adapter import set_host_addresses

        from .clip import read_clip
        from .load import Recorder

        set_host_addresses(["127.0.0.1"])
        self.conn = conn
        self.config = config
        self.url: str = config["url"]
        self.clip = read_clip(Path(config["clip_path"]))
        self.recorder = Recorder()
        self.clients: list[Any] = []
        self.failures: list[str] = []
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.semaphore = asyncio.Semaphore(int(config.get("join_concurrency", 4)))

    def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(message)

    def _on_readable(self) -> None:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.inbox.put_nowait(None)
            return
        self.inbox.put_nowait(message)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self.config["max_seconds"])
        loop.add_reader(self.conn.fileno(), self._on_readable)
        self._send({"type": "started", "pid": os.getpid()})
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    message = await asyncio.wait_for(self.inbox.get(), remaining)
                except TimeoutError:
                    break
                if message is None:
                    break  # the coordinator is gone
                if message["cmd"] == "stop":
                    await self._close_all()
                    self._send({"id": message["id"], "type": "stopped"})
                    return
                self._handle(message)
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.conn.fileno())
            await self._close_all()

    def _handle(self, message: dict[str, Any]) -> None:
        cmd = message["cmd"]
        if cmd == "join":
            task = asyncio.get_running_loop().create_task(self._join(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif cmd == "snapshot":
            if "record" in message:
                self.recorder.recording = bool(message["record"])
                if self.recorder.recording:  # a new window: forget the previous one's samples
                    self.recorder.sent.clear()
                    self.recorder.received.clear()
                    for client in self.clients:
                        for track in client.tracks:
                            track.max_lag = 0.0
            self._send({"id": message["id"], "type": "snapshot", **self._snapshot()})
        elif cmd == "report":
            self._send({"id": message["id"], "type": "report", **self._report()})
        elif cmd == "join_time":
            client = next((c for c in self.clients if c.spec.peer_id == message["peer"]), None)
            first, frame = client.join_ms() if client is not None else (None, None)
            ready = client is not None and client.ready
            self._send(
                {"id": message["id"], "type": "join_time", "ready": ready, "join": [first, frame]}
            )
        else:
            self._send({"id": message["id"], "type": "error", "error": f"unknown command {cmd}"})

    async def _join(self, message: dict[str, Any]) -> None:
        from .load import CLIENT_TYPES, ClientSpec

        specs = [ClientSpec(**spec) for spec in message["clients"]]
        results = await asyncio.gather(*(self._join_one(spec, CLIENT_TYPES) for spec in specs))
        ok = sum(1 for r in results if r)
        self._send({"id": message["id"], "type": "joined", "ok": ok, "failed": len(specs) - ok})

    async def _join_one(self, spec: Any, types: dict[str, Any]) -> bool:
        client = types[spec.role](spec, self.url, self.clip, self.recorder)
        async with self.semaphore:
            self.clients.append(client)
            try:
                await asyncio.wait_for(client.start(), JOIN_TIMEOUT)
                return True
            except Exception as exc:
                self.failures.append(f"{spec.peer_id}: {exc!r}")
                return False

    def _snapshot(self) -> dict[str, Any]:
        totals = {"received": 0, "expected": 0, "bytes": 0, "rtx": 0, "unknown": 0}
        subscribers = ready = 0
        sent = 0
        for client in self.clients:
            counts = client.counter.totals()
            for key in totals:
                totals[key] += counts[key]
            sent += client.sender.packets
            if client.is_subscriber:
                subscribers += 1
                ready += client.ready
        tracks = [track for client in self.clients for track in client.tracks]
        return {
            **totals,
            "sent": sent,
            "track_packets": sum(t.packets_out for t in tracks),
            "track_lag": max((t.max_lag for t in tracks), default=0.0),
            "subscribers": subscribers,
            "ready": ready,
            "clients": len(self.clients),
            "failures": len(self.failures),
            "cpu": time.process_time(),
            "t": time.monotonic(),
        }

    def _report(self) -> dict[str, Any]:
        joins = []
        for client in self.clients:
            if client.is_subscriber:
                first, frame = client.join_ms()
                if first is not None:
                    joins.append((first, frame))
        not_ready = [
            {
                "peer": c.spec.peer_id,
                "expected_streams": c.spec.expect_streams,
                "streams": len(c.counter.streams),
                "streams_with_media": c.counter.totals()["streams_with_media"],
                "silent": sorted(
                    f"{s.kind}:{s.producer_id[:8]}"
                    for s in c.counter.streams.values()
                    if not s.packets
                ),
            }
            for c in self.clients
            if c.is_subscriber and not c.ready
        ]
        keyframe_requests = sum(
            getattr(track, "keyframe_requests", 0) for c in self.clients for track in c.tracks
        )
        return {
            "sent": self.recorder.sent,
            "received": self.recorder.received,
            "joins": joins,
            "failures": self.failures[:20],
            "keyframe_requests": keyframe_requests,
            "not_ready": not_ready[:10],
        }

    async def _close_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        clients, self.clients = self.clients, []
        if clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*(c.close() for c in clients), return_exceptions=True), 20
                )


class WorkerHandle:
    """The coordinator's end of one load process."""

    def __init__(
        self,
        process: multiprocessing.process.BaseProcess,
        conn: multiprocessing.connection.Connection,
    ) -> None:
        self.process = process
        self.conn = conn
        self.pid: int | None = None
        self._next_id = 1
        self._stash: dict[int, dict[str, Any]] = {}

    def send(self, cmd: str, **data: Any) -> int:
        request_id = self._next_id
        self._next_id += 1
        try:
            self.conn.send({"cmd": cmd, "id": request_id, **data})
        except (OSError, ValueError) as exc:
            raise WorkerError(f"load process {self.pid} is gone: {exc}") from exc
        return request_id

    def wait(self, request_id: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while request_id not in self._stash:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.conn.poll(remaining):
                raise WorkerError(f"load process {self.pid} did not answer in {timeout:.0f} s")
            try:
                message = self.conn.recv()
            except (EOFError, OSError) as exc:
                raise WorkerError(f"load process {self.pid} exited") from exc
            self._stash[message.get("id", 0)] = message
        return self._stash.pop(request_id)

    def request(self, cmd: str, timeout: float = 15.0, **data: Any) -> dict[str, Any]:
        return self.wait(self.send(cmd, **data), timeout)

    def cpu_seconds(self) -> float | None:
        from .target import proc_cpu_seconds

        return proc_cpu_seconds(self.pid) if self.pid else None

    def stop(self, timeout: float = 30.0) -> None:
        with contextlib.suppress(WorkerError):
            self.request("stop", timeout=timeout)
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


def start_workers(configs: list[dict[str, Any]], timeout: float = 90.0) -> list[WorkerHandle]:
    """Start load processes (spawned: nothing inherited from the coordinator), all at once."""
    context = multiprocessing.get_context("spawn")
    handles = []
    for config in configs:
        parent, child = context.Pipe()
        process = context.Process(target=_worker_main, args=(child, config), daemon=True)
        process.start()
        child.close()
        handles.append(WorkerHandle(process, parent))
    deadline = time.monotonic() + timeout
    try:
        for handle in handles:
            if not handle.conn.poll(max(0.0, deadline - time.monotonic())):
                raise WorkerError("a load process did not start in time")
            try:
                message = handle.conn.recv()
            except (EOFError, OSError) as exc:
                raise WorkerError("a load process died at start-up") from exc
            handle.pid = int(message["pid"])
    except BaseException:
        for handle in handles:
            handle.stop(1)
        raise
    return handles
