"""Bad input on every protoo method: each gets ok:false with a code and a reason, and
the connection, the room and the other peers' media live on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from ..conftest import ServerProcess
from .helpers import RawPeer, join


@pytest.fixture
async def raw_peer_factory(
    sfu_server: ServerProcess,
) -> AsyncIterator[Callable[[str, str], Awaitable[RawPeer]]]:
    session = aiohttp.ClientSession()
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def connect(room: str, peer_id: str) -> RawPeer:
        ws = await session.ws_connect(
            f"{sfu_server.ws_url}/?roomId={room}&peerId={peer_id}", protocols=("protoo",)
        )
        sockets.append(ws)
        return RawPeer(ws)

    yield connect
    for ws in sockets:
        await ws.close()
    await session.close()


DTLS = {"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "AB:CD"}]}


async def test_every_method_rejects_bad_input_and_the_room_lives_on(
    sfu_server: ServerProcess, raw_peer_factory: Callable[[str, str], Awaitable[RawPeer]]
) -> None:
    alice = await join(sfu_server, "fuzz", "alice", 440)
    bob = await join(sfu_server, "fuzz", "bob", 660)
    evil = await raw_peer_factory("fuzz", "evil")
    try:
        assert await bob.client.wait_for_consumers(2, timeout=15)
        sink = bob.sink_for("alice", "video")
        assert await sink.wait_frames(5, timeout=20)
        # Ids of other peers' objects, which evil must not be able to touch.
        alice_transport = alice.client.send_transport.id
        alice_producer = alice.producers["video"]
        bob_consumer = bob.consumer_for("alice", "video").id

        # Frames that cannot be answered are ignored; the connection stays open.
        frames: list[str | bytes] = [
            "not json",
            "[1,2,3]",
            "42",
            json.dumps({"request": True, "method": "join"}),
            json.dumps({"response": True, "id": 999, "ok": True}),
            b"\x00\x01binary",
        ]
        for frame in frames:
            await evil.send_raw(frame)
        caps = await evil.request("getRouterRtpCapabilities")
        assert caps["ok"]
        assert caps["data"]["codecs"]

        # Envelope errors.
        await evil.expect_error(17, {}, 400)  # non-string method
        await evil.expect_error("join", [1, 2], 400)  # array data
        await evil.expect_error("noSuchMethod", {}, 404)
        await evil.expect_error("getRouterRtpCapabilities", {"pad": "x" * 70_000}, 413)

        # Out of state: produce before join.
        created = await evil.request(
            "createWebRtcTransport", {"producing": True, "consuming": False}
        )
        assert created["ok"], created
        evil_transport = created["data"]["id"]
        send_params = {
            "transportId": evil_transport,
            "kind": "audio",
            "rtpParameters": {
                "codecs": [
                    {
                        "mimeType": "audio/opus",
                        "payloadType": 111,
                        "clockRate": 48000,
                        "channels": 2,
                    }
                ],
                "encodings": [{"ssrc": 1}],
            },
        }
        await evil.expect_error("produce", send_params, 409)

        # join
        await evil.expect_error("join", {"displayName": 5, "rtpCapabilities": caps["data"]}, 400)
        await evil.expect_error("join", {"displayName": "e", "rtpCapabilities": "all"}, 400)
        await evil.expect_error(
            "join", {"displayName": "e", "rtpCapabilities": {"codecs": "x"}}, 400
        )
        joined = await evil.request(
            "join", {"displayName": "evil", "device": {}, "rtpCapabilities": caps["data"]}
        )
        assert joined["ok"]
        assert {p["id"] for p in joined["data"]["peers"]} == {"alice", "bob"}
        await evil.expect_error(
            "join", {"displayName": "evil", "rtpCapabilities": caps["data"]}, 409
        )

        # createWebRtcTransport
        await evil.expect_error("createWebRtcTransport", {"producing": "yes"}, 400)
        await evil.expect_error("createWebRtcTransport", {"forceTcp": True}, 406)
        await evil.expect_error("createWebRtcTransport", {"sctpCapabilities": 3}, 400)

        # connectWebRtcTransport
        await evil.expect_error("connectWebRtcTransport", {}, 400)
        await evil.expect_error(
            "connectWebRtcTransport", {"transportId": "nope", "dtlsParameters": DTLS}, 404
        )
        await evil.expect_error(
            "connectWebRtcTransport", {"transportId": alice_transport, "dtlsParameters": DTLS}, 403
        )
        await evil.expect_error(
            "connectWebRtcTransport",
            {"transportId": evil_transport, "dtlsParameters": {"role": "boss", "fingerprints": []}},
            400,
        )
        await evil.expect_error(
            "connectWebRtcTransport", {"transportId": evil_transport, "dtlsParameters": "x"}, 400
        )
        assert (
            await evil.request(
                "connectWebRtcTransport", {"transportId": evil_transport, "dtlsParameters": DTLS}
            )
        )["ok"]
        await evil.expect_error(
            "connectWebRtcTransport", {"transportId": evil_transport, "dtlsParameters": DTLS}, 409
        )

        # restartIce
        await evil.expect_error("restartIce", {"transportId": 5}, 400)
        await evil.expect_error("restartIce", {"transportId": alice_transport}, 403)

        # produce
        await evil.expect_error("produce", {**send_params, "kind": "smell"}, 400)
        await evil.expect_error("produce", {**send_params, "rtpParameters": {"codecs": 1}}, 400)
        h265 = {
            "codecs": [{"mimeType": "video/H265", "payloadType": 100, "clockRate": 90000}],
            "encodings": [{"ssrc": 2}],
        }
        await evil.expect_error(
            "produce", {**send_params, "kind": "video", "rtpParameters": h265}, 406
        )
        await evil.expect_error("produce", {**send_params, "transportId": alice_transport}, 403)

        # producers
        for method in ("closeProducer", "pauseProducer", "resumeProducer", "getProducerStats"):
            await evil.expect_error(method, {}, 400)
            await evil.expect_error(method, {"producerId": "nope"}, 404)
            await evil.expect_error(method, {"producerId": alice_producer}, 403)

        # consumers
        for method in (
            "pauseConsumer",
            "resumeConsumer",
            "requestConsumerKeyFrame",
            "getConsumerStats",
        ):
            await evil.expect_error(method, {}, 400)
            await evil.expect_error(method, {"consumerId": ["x"]}, 400)
            await evil.expect_error(method, {"consumerId": "nope"}, 404)
            await evil.expect_error(method, {"consumerId": bob_consumer}, 403)
        await evil.expect_error(
            "setConsumerPriority", {"consumerId": bob_consumer, "priority": 2}, 403
        )
        await evil.expect_error(
            "setConsumerPriority", {"consumerId": "nope", "priority": "high"}, 404
        )
        await evil.expect_error(
            "setConsumerPreferredLayers", {"consumerId": bob_consumer, "spatialLayer": 0}, 403
        )
        await evil.expect_error("setConsumerPreferredLayers", {"consumerId": "nope"}, 404)

        # the rest
        await evil.expect_error("changeDisplayName", {"displayName": []}, 400)
        await evil.expect_error("getTransportStats", {"transportId": alice_transport}, 403)
        await evil.expect_error("produceData", {"transportId": evil_transport}, 400)
        await evil.expect_error(
            "produceData",
            {"transportId": alice_transport, "sctpStreamParameters": {"streamId": 1}},
            403,
        )
        await evil.expect_error("getDataProducerStats", {"dataProducerId": "nope"}, 404)

        # Nothing of alice's or bob's was touched, and their media still flows.
        stats = await alice.client.request("getProducerStats", {"producerId": alice_producer})
        assert stats[0]["packetCount"] > 0
        count = sink.frames
        assert await sink.wait_frames(count + 15, timeout=10), "media stopped during the bad input"
        # The evil connection itself is still usable.
        assert (await evil.request("getTransportStats", {"transportId": evil_transport}))["ok"]
        health = sfu_server.health()
        assert health["rooms"] == 1
        assert health["peers"] == 3
        assert "Traceback" not in sfu_server.log()
    finally:
        await alice.client.close()
        await bob.client.close()


async def test_rejoin_with_same_peer_id_replaces_the_old_session(sfu_server: ServerProcess) -> None:
    alice = await join(sfu_server, "rejoin", "alice", 440)
    bob = await join(sfu_server, "rejoin", "bob", 660)
    bob_again = None
    try:
        assert await alice.client.wait_for_consumers(2, timeout=15)
        closed: list[str] = []
        alice.client.on("peerclosed", closed.append)
        bob_again = await join(sfu_server, "rejoin", "bob", 880)
        assert await alice.client.wait_for_consumers(2, timeout=15)
        await asyncio.sleep(0.5)
        assert closed == ["bob"], closed
        assert list(alice.client.peers) == ["bob"], "one bob, not two"
        health = sfu_server.health()
        assert health["peers"] == 2
        assert health["producers"] == 4
        sink = alice.sink_for("bob", "video")
        assert await sink.wait_frames(5, timeout=10)
    finally:
        for p in (alice, bob, bob_again):
            if p is not None:
                await p.client.close()
