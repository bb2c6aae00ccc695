"""Helpers for end-to-end tests with real pymediasoup peers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from sfu.client import PatternVideoTrack, RemoteConsumer, SfuClient, ToneAudioTrack, TrackSink
from sfu.config import config_from_dict
from sfu.server import SfuServer

from ..conftest import LOOPBACK, ServerProcess, free_tcp_port

VIDEO_SIZE = (320, 240)


@dataclass
class Participant:
    client: SfuClient
    tone: float
    producers: dict[str, str] = field(default_factory=dict)  # kind -> producer id
    sinks: dict[str, TrackSink] = field(default_factory=dict)  # consumer id -> sink

    def sink_for(self, peer_id: str, kind: str) -> TrackSink:
        for consumer_id, sink in self.sinks.items():
            remote = self.client.consumers.get(consumer_id)
            if remote is not None and remote.peer_id == peer_id and remote.kind == kind:
                return sink
        raise KeyError(f"{self.client.peer_id} has no {kind} consumer of {peer_id}")

    def consumer_for(self, peer_id: str, kind: str) -> RemoteConsumer:
        for remote in self.client.consumers.values():
            if remote.peer_id == peer_id and remote.kind == kind:
                return remote
        raise KeyError(f"{self.client.peer_id} has no {kind} consumer of {peer_id}")


async def join(
    server: ServerProcess,
    room: str,
    peer_id: str,
    tone: float,
    *,
    audio: bool = True,
    video: bool = True,
    consume: bool = True,
    ice_addresses: list[str] = LOOPBACK,
    **client_options: Any,
) -> Participant:
    """``client_options``: more SfuClient arguments (``access_token``...)."""
    client = SfuClient(
        server.ws_url,
        room,
        peer_id,
        display_name=peer_id,
        ice_addresses=ice_addresses,
        consume=consume,
        **client_options,
    )
    participant = Participant(client, tone)

    def on_consumer(remote: RemoteConsumer) -> None:
        participant.sinks[remote.id] = TrackSink(remote.track).start()

    client.on("newconsumer", on_consumer)
    await client.join()
    if audio:
        participant.producers["audio"] = await client.produce(ToneAudioTrack(frequency=tone))
    if video:
        participant.producers["video"] = await client.produce(
            PatternVideoTrack(*VIDEO_SIZE, fps=15)
        )
    return participant


def dominant_frequency(samples: np.ndarray, sample_rate: int = 48000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[int(np.argmax(spectrum))])


async def close_all(*participants: Participant) -> None:
    """Close every participant's client, each whatever the others do."""
    await asyncio.gather(*(p.client.close() for p in participants), return_exceptions=True)


async def wait_until(
    predicate: Callable[..., object], timeout: float, interval: float = 0.05
) -> bool:
    """Poll a cheap condition with a bounded timeout (for server-side state we cannot await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


def _parse_deep(text: str) -> Any:
    """json.loads, also for messages nested deeper than the recursion limit allows
    (the server may echo a hostile peer's deeply nested ``device``)."""
    try:
        return json.loads(text)
    except RecursionError:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(limit + 5000)
        try:
            return json.loads(text)
        finally:
            sys.setrecursionlimit(limit)


class RawPeer:
    """A hand-driven protoo peer that can send anything.

    A background task reads the socket all the time (so that the server's
    heartbeat pings are answered even while a test keeps the peer idle):
    server -> client requests (newConsumer) are refused politely, or accepted
    with ``accept_consumers`` (their ids go to :attr:`consumer_ids`),
    notifications go to :attr:`notifications`, responses wait in a queue.
    """

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, *, accept_consumers: bool = False
    ) -> None:
        self.ws = ws
        self.accept_consumers = accept_consumers
        self._ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []
        self.consumer_ids: list[str] = []
        self._inbox: asyncio.Queue[dict[str, Any] | aiohttp.WSMessage] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    continue
                self._inbox.put_nowait(msg)  # closed (or an error): the end
                return
            message = _parse_deep(msg.data)
            if message.get("request"):
                if self.accept_consumers and message.get("method") == "newConsumer":
                    self.consumer_ids.append(message["data"]["id"])
                    answer = {"response": True, "id": message["id"], "ok": True, "data": {}}
                else:
                    answer = {
                        "response": True,
                        "id": message["id"],
                        "ok": False,
                        "errorCode": 501,
                        "errorReason": "raw test peer",
                    }
                with contextlib.suppress(ConnectionError):
                    await self.ws.send_str(json.dumps(answer))
            elif message.get("notification"):
                self.notifications.append(message)
            else:
                self._inbox.put_nowait(message)

    async def send_raw(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def send_request(self, method: Any, data: Any = None, *, request_id: Any = None) -> Any:
        """Send a request without waiting; return its id."""
        request_id = next(self._ids) if request_id is None else request_id
        message: dict[str, Any] = {"request": True, "id": request_id, "method": method}
        if data is not None:
            message["data"] = data
        await self.ws.send_str(json.dumps(message))
        return request_id

    async def notify(self, method: str, data: Any = None) -> None:
        await self.ws.send_str(
            json.dumps({"notification": True, "method": method, "data": data or {}})
        )

    async def request(
        self, method: Any, data: Any = None, *, request_id: Any = None
    ) -> dict[str, Any]:
        request_id = await self.send_request(method, data, request_id=request_id)
        return await self.response(request_id)

    async def _next_message(self) -> dict[str, Any]:
        """The next response from the server; fails if the socket closed."""
        message = await self._inbox.get()
        if isinstance(message, aiohttp.WSMessage):
            self._inbox.put_nowait(message)  # stays closed
            raise AssertionError(f"connection closed: {message} (close code {self.ws.close_code})")
        return message

    async def wait_closed(self, timeout: float = 5.0) -> aiohttp.WSMessage:
        """Wait for the server to close the socket; the close message (code in ``.data``)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self._inbox.get()
                if isinstance(message, aiohttp.WSMessage):
                    self._inbox.put_nowait(message)
                    return message

    async def response(self, request_id: Any, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self._next_message()
                if message.get("response") and message.get("id") == request_id:
                    return message

    async def responses_until(self, request_id: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every response up to and including the one to ``request_id`` (bounded wait)."""
        responses: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self._next_message()
                responses.append(message)
                if message.get("response") and message.get("id") == request_id:
                    return responses

    async def expect_error(self, method: Any, data: Any, code: int) -> str:
        response = await self.request(method, data)
        assert response["ok"] is False, f"{method} {data!r} unexpectedly succeeded: {response}"
        assert response["errorCode"] == code, f"{method} {data!r}: {response}"
        assert isinstance(response["errorReason"], str)
        assert response["errorReason"]
        return str(response["errorReason"])

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._reader, 5)


async def start_bot_process(
    server: ServerProcess, room: str, peer_id: str, *args: str, capture: bool = False
) -> asyncio.subprocess.Process:
    """The ``python -m sfu.client`` bot in its own process (stdout piped when ``capture``)."""
    import subprocess
    import sys

    from ..conftest import REPO

    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sfu.client",
        "--url",
        server.ws_url,
        "--room",
        room,
        "--peer",
        peer_id,
        *args,
        cwd=REPO,
        stdout=output,
        stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
    )


@contextlib.asynccontextmanager
async def in_process_server(
    rtc_min_port: int, **sections: dict[str, Any]
) -> AsyncIterator[tuple[SfuServer, str]]:
    """An SfuServer in this process, its media workers too (so a test can reach
    its rooms, peers and media objects), on 127.0.0.1 with 200 media ports from
    ``rtc_min_port``; ``sections`` add config sections. Yields it and its ws:// URL."""
    port = free_tcp_port()
    config = config_from_dict(
        {
            "http": {"listen_ip": "127.0.0.1", "port": port},
            "media": {
                "listen_ip": "127.0.0.1",
                "rtc_min_port": rtc_min_port,
                "rtc_max_port": rtc_min_port + 199,
            },
            **sections,
        }
    )
    server = SfuServer(config, in_process_workers=True)
    await server.start()
    runner = web.AppRunner(server.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server, f"ws://127.0.0.1:{port}"
    finally:
        await server.close()
        await runner.cleanup()
