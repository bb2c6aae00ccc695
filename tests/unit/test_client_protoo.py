"""sfu.client against a stub protoo server on 127.0.0.1 (no real SFU needed).

- ProtooConnection: subprotocol, request/response, errors, timeouts,
  server->client requests in their own tasks, notifications, bad frames, close.
- SfuClient: the mediasoup-demo join sequence, newConsumer before the join
  response, lazy connectWebRtcTransport, produce, notifications. Media never
  flows (the stub has no ICE/DTLS); aiortc only gathers on 127.0.0.1.
- ToneAudioTrack / PatternVideoTrack / TrackSink sanity.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from fractions import Fraction
from typing import Any

import aiohttp
import aioice.ice
import numpy as np
import pytest
from aiohttp import web

from sfu.client import (
    PatternVideoTrack,
    ProtooConnection,
    ProtooError,
    RemoteConsumer,
    SfuClient,
    ToneAudioTrack,
    TrackSink,
)

# --- a tiny protoo server ---------------------------------------------------

StubHandler = Callable[["StubPeer", dict[str, Any]], Awaitable[dict[str, Any] | None]]


class StubError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class StubPeer:
    """The server side of one protoo WebSocket."""

    def __init__(
        self, ws: web.WebSocketResponse, query: dict[str, str], handlers: dict[str, StubHandler]
    ) -> None:
        self.ws = ws
        self.query = query
        self.handlers = handlers
        self.log: list[tuple[str, Any]] = []  # ("request"/"notification"/"response", ...)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.changed = asyncio.Event()
        self.closed = asyncio.Event()
        self._next_id = 1000
        self._tasks: set[asyncio.Task[Any]] = set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def request(self, method: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send a request; return the raw response message."""
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self._next_id] = future
        await self.send({"request": True, "id": self._next_id, "method": method, "data": data})
        return await asyncio.wait_for(future, 10)

    async def notify(self, method: str, data: dict[str, Any]) -> None:
        await self.send({"notification": True, "method": method, "data": data})

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), 10)

    def methods(self) -> list[str]:
        return [method for method, _ in self.requests]

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                if message.get("request"):
                    self.requests.append((message["method"], message["data"]))
                    self.log.append(("request", message["method"]))
                    task = asyncio.create_task(self._answer(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif message.get("response"):
                    self.log.append(("response", message["id"]))
                    future = self.pending.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("notification"):
                    self.notifications.append((message["method"], message["data"]))
                    self.log.append(("notification", message["method"]))
                self.changed.set()
        finally:
            for task in self._tasks:
                task.cancel()
            self.closed.set()
            self.changed.set()

    async def _answer(self, message: dict[str, Any]) -> None:
        handler = self.handlers.get(message["method"])
        try:
            if handler is None:
                raise StubError(404, f"no method {message['method']}")
            data = await handler(self, message["data"])
            reply: dict[str, Any] = {
                "response": True,
                "id": message["id"],
                "ok": True,
                "data": data or {},
            }
        except StubError as exc:
            reply = {
                "response": True,
                "id": message["id"],
                "ok": False,
                "errorCode": exc.code,
                "errorReason": exc.reason,
            }
        self.log.append(("answered", message["method"]))
        if not self.ws.closed:
            await self.send(reply)


class StubServer:
    def __init__(self) -> None:
        self.handlers: dict[str, StubHandler] = {}
        self.peers: list[StubPeer] = []
        self.new_peer = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._protoo)
        app.router.add_get("/plain", self._plain)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"ws://{host}:{port}"

    async def stop(self) -> None:
        for peer in self.peers:
            await peer.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def peer(self, index: int = -1) -> StubPeer:
        async def wait() -> None:
            while not self.peers:
                self.new_peer.clear()
                await self.new_peer.wait()

        await asyncio.wait_for(wait(), 5)
        return self.peers[index]

    async def _protoo(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("protoo",))
        await ws.prepare(request)
        assert ws.ws_protocol == "protoo"
        peer = StubPeer(ws, dict(request.query), self.handlers)
        self.peers.append(peer)
        self.new_peer.set()
        await peer.run()
        return ws

    async def _plain(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()  # accepts no subprotocol
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = StubServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _echo(peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
    return {"echo": data, "query": peer.query}


async def _fail(peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
    raise StubError(418, "I'm a teapot")


async def _never(peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
    await asyncio.Event().wait()
    return {}


# --- ProtooConnection ---------------------------------------------------------


async def test_request_response_and_query(stub: StubServer) -> None:
    stub.handlers["echo"] = _echo
    conn = await ProtooConnection.connect(f"{stub.url}/?roomId=r1&peerId=p1")
    try:
        result = await conn.request("echo", {"a": 1, "b": [1, 2]})
        assert result == {"echo": {"a": 1, "b": [1, 2]}, "query": {"roomId": "r1", "peerId": "p1"}}
        # No data -> {} on the wire; concurrent requests are matched by id.
        results = await asyncio.gather(*(conn.request("echo", {"i": i}) for i in range(20)))
        assert [r["echo"]["i"] for r in results] == list(range(20))
        assert await conn.request("echo") == {"echo": {}, "query": {"roomId": "r1", "peerId": "p1"}}
        peer = await stub.peer()
        assert peer.ws.ws_protocol == "protoo"
    finally:
        await conn.close()


async def test_error_response_raises_protoo_error(stub: StubServer) -> None:
    stub.handlers["fail"] = _fail
    conn = await ProtooConnection.connect(f"{stub.url}/")
    try:
        with pytest.raises(ProtooError) as info:
            await conn.request("fail", {})
        assert info.value.code == 418
        assert info.value.reason == "I'm a teapot"
        with pytest.raises(ProtooError) as info:
            await conn.request("noSuchMethod")
        assert info.value.code == 404
    finally:
        await conn.close()


async def test_request_timeout(stub: StubServer) -> None:
    stub.handlers["never"] = _never
    stub.handlers["echo"] = _echo
    conn = await ProtooConnection.connect(f"{stub.url}/")
    try:
        with pytest.raises(asyncio.TimeoutError):
            await conn.request("never", timeout=0.2)
        # The connection is still usable, and a late answer would be ignored.
        assert (await conn.request("echo", {"x": 1}))["echo"] == {"x": 1}
    finally:
        await conn.close()


async def test_subprotocol_is_required(stub: StubServer) -> None:
    with pytest.raises(ConnectionError, match="protoo"):
        await ProtooConnection.connect(f"{stub.url}/plain")


async def test_server_request_handled_in_own_task(stub: StubServer) -> None:
    conn = await ProtooConnection.connect(f"{stub.url}/")
    released = asyncio.Event()

    async def on_question(data: dict[str, Any]) -> dict[str, Any]:
        # Blocks until a notification arrives: only works if the reader keeps reading.
        await released.wait()
        return {"answer": data["q"] * 2}

    async def on_forbidden(data: dict[str, Any]) -> dict[str, Any]:
        raise ProtooError(403, "not for you")

    async def on_broken(data: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    conn.on_request("question", on_question)
    conn.on_request("forbidden", on_forbidden)
    conn.on_request("broken", on_broken)
    conn.on_notification("release", lambda data: released.set())
    try:
        peer = await stub.peer()
        pending = asyncio.create_task(peer.request("question", {"q": 21}))
        await asyncio.sleep(0.05)
        assert not pending.done()
        await peer.notify("release", {})
        reply = await pending
        assert reply["ok"] is True
        assert reply["data"] == {"answer": 42}

        reply = await peer.request("forbidden", {})
        assert reply["ok"] is False
        assert (reply["errorCode"], reply["errorReason"]) == (403, "not for you")

        reply = await peer.request("broken", {})
        assert reply["ok"] is False
        assert reply["errorCode"] == 500
        assert "boom" in reply["errorReason"]

        reply = await peer.request("unknownMethod", {})
        assert reply["ok"] is False
        assert reply["errorCode"] == 501
    finally:
        await conn.close()


async def test_notifications_dispatched_in_order(stub: StubServer) -> None:
    conn = await ProtooConnection.connect(f"{stub.url}/")
    seen: list[tuple[str, dict[str, Any]]] = []
    done = asyncio.Event()

    async def on_async_note(data: dict[str, Any]) -> None:
        seen.append(("asyncNote", data))
        done.set()

    conn.on_notification("note", lambda data: seen.append(("note", data)))
    conn.on_notification("asyncNote", on_async_note)
    conn.on_any_notification(lambda method, data: seen.append((method, data)))
    try:
        peer = await stub.peer()
        for i in range(5):
            await peer.notify("note", {"i": i})
        await peer.notify("other", {"x": True})
        await peer.notify("asyncNote", {"y": 1})
        await asyncio.wait_for(done.wait(), 5)
        assert seen == [("note", {"i": i}) for i in range(5)] + [
            ("other", {"x": True}),
            ("asyncNote", {"y": 1}),
        ]
        # Client -> server notification.
        await conn.notify("hello", {"from": "client"})
        await peer.wait_for(lambda: bool(peer.notifications))
        assert peer.notifications == [("hello", {"from": "client"})]
    finally:
        await conn.close()


async def test_bad_frames_are_ignored(stub: StubServer) -> None:
    stub.handlers["echo"] = _echo
    conn = await ProtooConnection.connect(f"{stub.url}/")
    try:
        peer = await stub.peer()
        await peer.ws.send_str("not json")
        await peer.ws.send_str("[1, 2, 3]")
        await peer.ws.send_bytes(b"\x00\x01")
        await peer.ws.send_str('{"response": true, "id": 987654, "ok": true, "data": {}}')
        await peer.ws.send_str('{"request": true, "method": "noId", "data": {}}')
        await peer.ws.send_str('{"notification": true, "method": 5}')
        await peer.ws.send_str('{"something": "else"}')
        assert (await conn.request("echo", {"still": "alive"}))["echo"] == {"still": "alive"}
        assert not conn.closed
    finally:
        await conn.close()


async def test_close_by_client(stub: StubServer) -> None:
    stub.handlers["never"] = _never
    conn = await ProtooConnection.connect(f"{stub.url}/")
    closed_calls: list[bool] = []
    conn.on_close(lambda: closed_calls.append(True))
    peer = await stub.peer()
    pending = asyncio.create_task(conn.request("never", timeout=30))
    await peer.wait_for(lambda: "never" in peer.methods())
    await conn.close()
    assert conn.closed
    assert closed_calls == [True]
    with pytest.raises(ConnectionError):
        await pending
    with pytest.raises(ConnectionError):
        await conn.request("echo")
    await asyncio.wait_for(peer.closed.wait(), 5)
    await conn.close()  # idempotent
    assert closed_calls == [True]


async def test_close_by_server(stub: StubServer) -> None:
    stub.handlers["never"] = _never
    conn = await ProtooConnection.connect(f"{stub.url}/")
    closed = asyncio.Event()
    conn.on_close(closed.set)
    peer = await stub.peer()
    pending = asyncio.create_task(conn.request("never", timeout=30))
    await peer.wait_for(lambda: "never" in peer.methods())
    await peer.ws.close()
    await asyncio.wait_for(closed.wait(), 5)
    await asyncio.wait_for(conn.wait_closed(), 5)
    with pytest.raises(ConnectionError):
        await pending
    await conn.close()


# --- SfuClient against a stub SFU --------------------------------------------

ROUTER_RTP_CAPABILITIES: dict[str, Any] = {
    "codecs": [
        {
            "kind": "audio",
            "mimeType": "audio/opus",
            "clockRate": 48000,
            "channels": 2,
            "preferredPayloadType": 100,
            "parameters": {},
            "rtcpFeedback": [{"type": "nack", "parameter": ""}],
        },
        {
            "kind": "video",
            "mimeType": "video/VP8",
            "clockRate": 90000,
            "preferredPayloadType": 101,
            "parameters": {},
            "rtcpFeedback": [
                {"type": "nack", "parameter": ""},
                {"type": "nack", "parameter": "pli"},
                {"type": "ccm", "parameter": "fir"},
                {"type": "goog-remb", "parameter": ""},
            ],
        },
        {
            "kind": "video",
            "mimeType": "video/rtx",
            "clockRate": 90000,
            "preferredPayloadType": 102,
            "parameters": {"apt": 101},
            "rtcpFeedback": [],
        },
    ],
    "headerExtensions": [
        {
            "kind": "audio",
            "uri": "urn:ietf:params:rtp-hdrext:sdes:mid",
            "preferredId": 1,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
        {
            "kind": "video",
            "uri": "urn:ietf:params:rtp-hdrext:sdes:mid",
            "preferredId": 1,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
        {
            "kind": "video",
            "uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "preferredId": 4,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
    ],
}

AUDIO_CONSUMER_RTP_PARAMETERS: dict[str, Any] = {
    "mid": "0",
    "codecs": [
        {
            "mimeType": "audio/opus",
            "payloadType": 100,
            "clockRate": 48000,
            "channels": 2,
            "parameters": {},
            "rtcpFeedback": [{"type": "nack", "parameter": ""}],
        }
    ],
    "headerExtensions": [],
    "encodings": [{"ssrc": 22222222}],
    "rtcp": {"cname": "alice-cname", "reducedSize": True, "mux": True},
}


class StubSfu:
    """Scripted server behaviour for one SfuClient."""

    def __init__(self, stub: StubServer, udp_port: int) -> None:
        self.stub = stub
        self.udp_port = udp_port
        self.transports: dict[str, dict[str, Any]] = {}
        self.consumer_answer: dict[str, Any] | None = None
        for name in (
            "getRouterRtpCapabilities",
            "createWebRtcTransport",
            "join",
            "connectWebRtcTransport",
            "produce",
            "resumeConsumer",
            "pauseConsumer",
            "pauseProducer",
            "resumeProducer",
            "closeProducer",
        ):
            stub.handlers[name] = getattr(self, name)

    async def getRouterRtpCapabilities(
        self, peer: StubPeer, data: dict[str, Any]
    ) -> dict[str, Any]:
        return ROUTER_RTP_CAPABILITIES

    async def createWebRtcTransport(self, peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
        transport_id = "send-transport" if data["producing"] else "recv-transport"
        self.transports[transport_id] = data
        return {
            "id": transport_id,
            "iceParameters": {
                "usernameFragment": f"uf{transport_id[:4]}",
                "password": "p" * 24,
                "iceLite": True,
            },
            "iceCandidates": [
                {
                    "foundation": "udpcandidate",
                    "priority": 1076302079,
                    "ip": "127.0.0.1",
                    "address": "127.0.0.1",
                    "protocol": "udp",
                    "port": self.udp_port,
                    "type": "host",
                }
            ],
            "dtlsParameters": {
                "role": "auto",
                "fingerprints": [{"algorithm": "sha-256", "value": ":".join(["AB"] * 32)}],
            },
            "sctpParameters": None,
        }

    async def join(self, peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
        # newConsumer and newPeer before the join response, as the design allows.
        await peer.notify(
            "newPeer", {"id": "carol", "displayName": "Carol", "device": {"flag": "x"}}
        )
        self.consumer_answer = await peer.request(
            "newConsumer",
            {
                "peerId": "alice",
                "producerId": "alice-mic",
                "id": "consumer-1",
                "kind": "audio",
                "rtpParameters": AUDIO_CONSUMER_RTP_PARAMETERS,
                "type": "simple",
                "appData": {"source": "mic"},
                "producerPaused": False,
            },
        )
        return {"peers": [{"id": "alice", "displayName": "Alice", "device": {"flag": "y"}}]}

    async def connectWebRtcTransport(self, peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
        if data["transportId"] not in self.transports:
            raise StubError(404, "no such transport")
        return {}

    async def produce(self, peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"producer-{data['kind']}"}

    async def resumeConsumer(self, peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
        return {}

    pauseConsumer = resumeConsumer
    pauseProducer = resumeConsumer
    resumeProducer = resumeConsumer
    closeProducer = resumeConsumer


@pytest.fixture
def black_hole() -> Any:
    """A UDP port on 127.0.0.1 that swallows the client's ICE checks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def restore_host_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    # SfuClient(ice_addresses=...) replaces it process-wide; put it back after the test.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)


def assert_join_requests(peer: StubPeer, sfu: StubSfu) -> None:
    """What the client asked before it joined, and what its join said."""
    # mediasoup-demo's order: capabilities, both transports, then join.
    assert peer.methods()[:4] == [
        "getRouterRtpCapabilities",
        "createWebRtcTransport",
        "createWebRtcTransport",
        "join",
    ]
    assert sfu.transports["send-transport"] == {
        "forceTcp": False,
        "producing": True,
        "consuming": False,
        "sctpCapabilities": {"numStreams": {"OS": 1024, "MIS": 1024}},
    }
    assert sfu.transports["recv-transport"]["consuming"] is True
    join_data = dict(peer.requests)["join"]
    assert join_data["displayName"] == "Bob"
    assert isinstance(join_data["device"], dict)
    assert {c["mimeType"] for c in join_data["rtpCapabilities"]["codecs"]} >= {
        "audio/opus",
        "video/VP8",
    }
    assert join_data["sctpCapabilities"] == {"numStreams": {"OS": 1024, "MIS": 1024}}


@pytest.mark.usefixtures("restore_host_addresses")
async def test_sfu_client_against_stub(stub: StubServer, black_hole: int) -> None:
    sfu = StubSfu(stub, black_hole)
    client = SfuClient(stub.url, "room-1", "bob", display_name="Bob", ice_addresses=["127.0.0.1"])
    events: list[tuple[Any, ...]] = []
    client.on("newpeer", lambda peer: events.append(("newpeer", peer["id"])))
    client.on("peerclosed", lambda peer_id: events.append(("peerclosed", peer_id)))
    client.on("newconsumer", lambda c: events.append(("newconsumer", c.id)))
    client.on("consumerclosed", lambda cid: events.append(("consumerclosed", cid)))
    client.on("consumerpaused", lambda cid: events.append(("consumerpaused", cid)))
    client.on("consumerresumed", lambda cid: events.append(("consumerresumed", cid)))
    client.on("activespeaker", lambda data: events.append(("activespeaker", data["peerId"])))
    client.on("notification", lambda method, data: events.append(("notification", method)))
    try:
        peers = await client.join()
        peer = await stub.peer()
        assert peer.query == {"roomId": "room-1", "peerId": "bob"}
        assert peers == [{"id": "alice", "displayName": "Alice", "device": {"flag": "y"}}]
        assert set(client.peers) == {"alice", "carol"}

        assert_join_requests(peer, sfu)

        # newConsumer (sent before the join response) was answered {} after
        # the recv transport connected as DTLS client.
        assert sfu.consumer_answer is not None
        assert sfu.consumer_answer["ok"] is True
        assert sfu.consumer_answer["data"] == {}
        connect = dict(peer.requests)["connectWebRtcTransport"]
        assert connect["transportId"] == "recv-transport"
        assert connect["dtlsParameters"]["role"] == "client"
        assert connect["dtlsParameters"]["fingerprints"][0]["algorithm"]
        remote = client.consumers["consumer-1"]
        assert isinstance(remote, RemoteConsumer)
        assert (remote.kind, remote.track.kind, remote.peer_id, remote.producer_id) == (
            "audio",
            "audio",
            "alice",
            "alice-mic",
        )
        assert remote.app_data == {"source": "mic"}
        assert not remote.paused
        # ... and resumed after the answer.
        await peer.wait_for(lambda: "resumeConsumer" in peer.methods())
        assert ("resumeConsumer", {"consumerId": "consumer-1"}) in peer.requests
        assert peer.log.index(("response", 1001)) < peer.log.index(("request", "resumeConsumer"))
        assert await client.wait_for_consumers(1, kind="audio", timeout=1)
        assert not await client.wait_for_consumers(1, kind="video", timeout=0.05)

        # Produce: the send transport connects (DTLS server) before `produce`.
        producer_id = await client.produce(ToneAudioTrack(), {"source": "mic"})
        assert producer_id == "producer-audio"
        methods = peer.methods()
        assert methods.index("produce") > len(methods) - 1 - methods[::-1].index(
            "connectWebRtcTransport"
        )
        send_connect = [d for m, d in peer.requests if m == "connectWebRtcTransport"][-1]
        assert send_connect["transportId"] == "send-transport"
        assert send_connect["dtlsParameters"]["role"] == "server"
        produce = dict(peer.requests)["produce"]
        assert produce["transportId"] == "send-transport"
        assert produce["kind"] == "audio"
        assert produce["appData"] == {"source": "mic"}
        assert produce["rtpParameters"]["codecs"][0]["mimeType"].lower() == "audio/opus"
        assert produce["rtpParameters"]["encodings"][0]["ssrc"] > 0
        assert "mid" in produce["rtpParameters"]

        await client.pause_producer(producer_id)
        await client.resume_producer(producer_id)
        await client.pause_consumer("consumer-1")
        assert client.consumers["consumer-1"].locally_paused
        await client.close_producer(producer_id)
        assert producer_id not in client.producers
        tail = peer.requests[-4:]
        assert tail == [
            ("pauseProducer", {"producerId": producer_id}),
            ("resumeProducer", {"producerId": producer_id}),
            ("pauseConsumer", {"consumerId": "consumer-1"}),
            ("closeProducer", {"producerId": producer_id}),
        ]

        # Notifications.
        closed = asyncio.Event()
        client.on("consumerclosed", lambda cid: closed.set())
        await peer.notify("consumerPaused", {"consumerId": "consumer-1"})
        await peer.notify("consumerResumed", {"consumerId": "consumer-1"})
        await peer.notify("activeSpeaker", {"peerId": "alice", "volume": -20})
        await peer.notify("consumerScore", {"consumerId": "consumer-1", "score": {"score": 10}})
        await peer.notify("peerClosed", {"peerId": "carol"})
        await peer.notify("consumerClosed", {"consumerId": "consumer-1"})
        await asyncio.wait_for(closed.wait(), 5)
        assert client.consumers == {}
        assert remote.closed
        assert set(client.peers) == {"alice"}
        assert events == [
            ("newpeer", "carol"),
            ("newconsumer", "consumer-1"),
            ("consumerpaused", "consumer-1"),
            ("consumerresumed", "consumer-1"),
            ("activespeaker", "alice"),
            ("notification", "consumerScore"),
            ("peerclosed", "carol"),
            ("consumerclosed", "consumer-1"),
        ]
    finally:
        await client.close()
    await asyncio.wait_for(peer.closed.wait(), 5)
    assert client.closed


@pytest.mark.usefixtures("restore_host_addresses")
async def test_sfu_client_disconnected(stub: StubServer, black_hole: int) -> None:
    sfu = StubSfu(stub, black_hole)

    async def join_without_consumers(peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
        return {"peers": []}

    stub.handlers["join"] = join_without_consumers
    client = SfuClient(stub.url, "room-2", produce=False, ice_addresses=["127.0.0.1"])
    disconnected = asyncio.Event()
    client.on("disconnected", disconnected.set)
    try:
        assert await client.join() == []
        assert client.send_transport is None
        assert client.recv_transport is not None
        assert list(sfu.transports) == ["recv-transport"]
        peer = await stub.peer()
        await peer.ws.close()
        await asyncio.wait_for(disconnected.wait(), 5)
        for _ in range(100):
            if client.closed:
                break
            await asyncio.sleep(0.01)
        assert client.closed
    finally:
        await client.close()


async def test_sfu_client_join_error_closes(stub: StubServer) -> None:
    async def refuse(peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
        raise StubError(403, "room is full")

    stub.handlers["getRouterRtpCapabilities"] = refuse
    client = SfuClient(stub.url, "room-3")
    with pytest.raises(ProtooError) as info:
        await client.join()
    assert (info.value.code, info.value.reason) == (403, "room is full")
    assert client.closed
    peer = await stub.peer()
    await asyncio.wait_for(peer.closed.wait(), 5)


# --- media helpers -------------------------------------------------------------


async def test_tone_audio_track() -> None:
    track = ToneAudioTrack(frequency=440.0, amplitude=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    frames = [await track.recv() for _ in range(10)]
    elapsed = loop.time() - started
    # Frame 9 is due 180 ms after frame 0.
    assert elapsed >= 0.17
    pts = [f.pts for f in frames]
    assert pts == [i * 960 for i in range(10)]
    for frame in frames:
        assert frame.format.name == "s16"
        assert frame.layout.name == "stereo"
        assert frame.samples == 960
        assert frame.sample_rate == 48000
        assert frame.time_base == Fraction(1, 48000)
    samples = (
        np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float64) / 32768
    )
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms == pytest.approx(0.3 / math.sqrt(2), rel=0.01)
    # Stereo channels carry the same signal.
    stereo = frames[3].to_ndarray().reshape(-1, 2)
    assert np.array_equal(stereo[:, 0], stereo[:, 1])
    track.enabled = False
    assert not np.any((await track.recv()).to_ndarray())
    track.stop()


async def test_pattern_video_track() -> None:
    track = PatternVideoTrack(width=320, height=240, fps=30)
    frames = [await track.recv() for _ in range(4)]
    assert [f.pts for f in frames] == [0, 3000, 6000, 9000]
    for frame in frames:
        assert frame.format.name == "yuv420p"
        assert (frame.width, frame.height) == (320, 240)
        assert frame.time_base == Fraction(1, 90000)
    first, second = (f.to_ndarray() for f in frames[:2])
    assert first.shape == (360, 320)
    assert not np.array_equal(first, second)  # the pattern moves
    track.stop()


async def test_track_sink_audio_and_video() -> None:
    audio = ToneAudioTrack(amplitude=0.3)
    video = PatternVideoTrack(width=160, height=120, fps=30)
    audio_sink = TrackSink(audio).start()
    video_sink = TrackSink(video).start()
    try:
        assert await audio_sink.wait_frames(10, timeout=3)
        assert await video_sink.wait_frames(4, timeout=3)
        assert audio_sink.sample_rate == 48000
        assert audio_sink.channels == 2
        assert audio_sink.rms(0.1) == pytest.approx(0.3 / math.sqrt(2), rel=0.02)
        assert audio_sink.audio(0.1).size == 4800 * 2
        assert video_sink.size == (160, 120)
        assert len(video_sink.timestamps) == video_sink.frames >= 4
        assert not await video_sink.wait_frames(10_000, timeout=0.05)
    finally:
        audio_sink.stop()
        video_sink.stop()
    # A stopped track ends its sink.
    sink = TrackSink(ToneAudioTrack()).start()
    assert await sink.wait_frames(1, timeout=2)
    sink.track.stop()
    assert not await sink.wait_frames(1_000, timeout=2)
    assert sink.ended


@pytest.mark.usefixtures("restore_host_addresses")
async def test_sfu_client_errors_propagate(stub: StubServer, black_hole: int) -> None:
    StubSfu(stub, black_hole)

    async def join_with_bad_consumer(peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
        answer = await peer.request(
            "newConsumer", {"id": "c-bad", "producerId": "p", "kind": "audio"}
        )
        assert answer["ok"] is False
        assert answer["errorCode"] == 400
        return {"peers": []}

    async def refuse_produce(peer: StubPeer, data: dict[str, Any]) -> dict[str, Any]:
        raise StubError(406, "cannot produce")

    stub.handlers["join"] = join_with_bad_consumer
    stub.handlers["produce"] = refuse_produce
    client = SfuClient(stub.url, "room-4", ice_addresses=["127.0.0.1"])
    try:
        await client.join()
        with pytest.raises(ProtooError) as info:
            await client.produce(ToneAudioTrack())
        assert (info.value.code, info.value.reason) == (406, "cannot produce")
        assert client.producers == {}
        with pytest.raises(KeyError):
            await client.pause_consumer("nope")
    finally:
        await client.close()
