"""Hostile signaling: fuzzed protoo frames, out-of-order calls, floods, the
``[limits]`` caps, and peers that guess other peers' ids.

Every request with an id the server can echo gets exactly one reply, ok:true
or ok:false with an integer errorCode (never 500) and a non-empty errorReason;
the connection stays usable; other rooms' media keeps flowing.

The fuzzer itself (what it generates, how it checks the replies, the raw
protoo clients) is the library tests/e2e/fuzzing.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from ..conftest import ServerProcess
from .fuzzing import (
    AUDIO_PARAMS,
    DTLS_PARAMS,
    MAX_REQUEST_BYTES,
    VIDEO_PARAMS,
    FuzzBudgetExhausted,
    Fuzzer,
    Raw,
    Registry,
    check_reply,
    flood,
    frame_gaps,
    fuzz_strategies,
    raw_peers,
    run_scripted_cases,
    wait_for_bucket,
)
from .helpers import join, wait_until

# Generous rate limits for the fuzzing server: the fuzzer should reach the handlers.
FUZZ_LIMITS: dict[str, dict[str, Any]] = {
    "limits": {"requests_per_second": 1_000_000.0, "request_burst": 1_000_000}
}
SMALL_LIMITS: dict[str, dict[str, Any]] = {
    "limits": {
        "max_rooms": 2,
        "max_peers_per_room": 2,
        "max_producers_per_peer": 1,
        "requests_per_second": 5,
        "request_burst": 10,
        "max_transports_per_peer": 2,
    }
}
small_limits = pytest.mark.parametrize("server_overrides", [SMALL_LIMITS], ids=["small-limits"])

# Environment overrides for a longer hunt: FUZZ_SEED=7 FUZZ_EXAMPLES=20000 FUZZ_SECONDS=600
# (and FUZZ_DEBUG=1 to print the most common error replies).
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20240611"))
FUZZ_MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1500"))
# Seconds; the fuzzing stops there even short of FUZZ_MAX_EXAMPLES.
FUZZ_TIME_BUDGET = float(os.environ.get("FUZZ_SECONDS", "25"))
# The longest gap between two video frames tolerated while the fuzzer runs.
MAX_FRAME_GAP = 5.0


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    return FUZZ_LIMITS


# ---- 1. fuzzing, out-of-order calls and floods, with media flowing next door ------


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # large reprs
async def test_fuzzed_signaling_gets_answers_and_media_next_door_keeps_flowing(
    sfu_server: ServerProcess,
) -> None:
    """Hypothesis fuzzing over a real WebSocket.

    The server is a fixture and the frames go over the event loop's sockets,
    so the ``@given`` function runs in a worker thread (``asyncio.to_thread``)
    and hands each example to the event loop with
    ``asyncio.run_coroutine_threadsafe``; the loop meanwhile keeps running the
    two real aiortc peers of the "media" room. Generation is seeded
    (``FUZZ_SEED``), bounded (``FUZZ_MAX_EXAMPLES`` examples, and examples
    past ``FUZZ_TIME_BUDGET`` seconds the next example raises
    ``FuzzBudgetExhausted``, which ends hypothesis' run), and not shrunk (the server
    keeps state between examples): a failure shows the example as generated.
    Then scripted out-of-order calls, duplicate ids and a flood of 500
    requests.
    """
    loop = asyncio.get_running_loop()
    alice = await join(sfu_server, "media", "alice", 440, audio=False)
    bob = await join(sfu_server, "media", "bob", 660, audio=False)
    try:
        assert await bob.client.wait_for_consumers(1, timeout=15)
        assert await alice.client.wait_for_consumers(1, timeout=15)
        sinks = {
            "alice->bob": bob.sink_for("alice", "video"),
            "bob->alice": alice.sink_for("bob", "video"),
        }
        for sink in sinks.values():
            assert await sink.wait_frames(5, timeout=20), "media never started"

        async with raw_peers(sfu_server) as connect:
            # A victim in the fuzz room: joined, consuming, with a transport and a producer.
            victim = await connect("fuzz", "victim", accept_consumers=True)
            caps = (await victim.request("getRouterRtpCapabilities"))["data"]
            registry = Registry()
            for producing in (True, False):
                created = await victim.request(
                    "createWebRtcTransport", {"producing": producing, "consuming": not producing}
                )
                registry.add("transport", created["data"]["id"], own=False)
            victim_transport = registry.others["transport"][2]
            assert (
                await victim.request(
                    "join", {"displayName": "victim", "device": {}, "rtpCapabilities": caps}
                )
            )["ok"]
            produced = await victim.request(
                "produce",
                {"transportId": victim_transport, "kind": "audio", "rtpParameters": AUDIO_PARAMS},
            )
            assert produced["ok"], produced
            registry.add("producer", produced["data"]["id"], own=False)

            # The main fuzzing connection starts joined, with a transport each way (so
            # that well-formed calls get far); fresh connections start from nothing.
            main = await connect("fuzz", "fuzzer", accept_consumers=True)
            for producing in (True, False):
                created = await main.request(
                    "createWebRtcTransport", {"producing": producing, "consuming": not producing}
                )
                registry.add("transport", created["data"]["id"], own=True)
            assert (
                await main.request(
                    "join", {"displayName": "fuzzer", "device": {}, "rtpCapabilities": caps}
                )
            )["ok"]
            fuzzer = Fuzzer(connect, main, victim, registry)
            deadline = time.monotonic() + FUZZ_TIME_BUDGET
            budget_hit = False

            @seed(FUZZ_SEED)
            @settings(
                max_examples=FUZZ_MAX_EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                report_multiple_bugs=False,
                suppress_health_check=list(HealthCheck),
            )
            @given(fuzz_strategies(caps))
            def fuzz(example: tuple[str, bool, list[tuple[str, Any]]]) -> None:
                if time.monotonic() > deadline:
                    raise FuzzBudgetExhausted
                future = asyncio.run_coroutine_threadsafe(fuzzer.run_example(*example), loop)
                try:
                    future.result(timeout=30)
                except TimeoutError:
                    future.cancel()
                    raise AssertionError(f"example hung for 30 s: {example!r}") from None

            fuzz_start = time.monotonic()
            try:
                await asyncio.to_thread(fuzz)
            except FuzzBudgetExhausted:
                budget_hit = True
            fuzz_seconds = time.monotonic() - fuzz_start
            scripted = await run_scripted_cases(connect)
            flood_peer = await connect("fuzz", "flooder")
            flood_seconds = await flood(flood_peer, 500)
            fuzz_end = time.monotonic()

            # The fuzzed connections are still usable.
            for peer in (main, victim, flood_peer):
                reply = await wait_for_bucket(peer)
                assert reply["ok"] is True, reply
            assert (
                await victim.request(
                    "getProducerStats", {"producerId": registry.others["producer"][2]}
                )
            )["ok"]
            # No peer left behind by the hundreds of fresh connections: alice, bob, victim,
            # fuzzer, order-1, order-2, flooder.
            assert await wait_until(lambda: sfu_server.health()["peers"] == 7, timeout=5), (
                sfu_server.health()
            )

        gaps = {name: frame_gaps(sink, fuzz_start, fuzz_end) for name, sink in sinks.items()}
        counts = {name: sink.frames for name, sink in sinks.items()}
        for name, sink in sinks.items():
            assert await sink.wait_frames(counts[name] + 15, timeout=10), (
                f"{name}: media stopped after the fuzzing"
            )
        print(
            f"\nfuzz: {fuzzer.cases} hypothesis cases in {fuzz_seconds:.1f} s"
            f"{' (stopped by the time budget)' if budget_hit else ''}: {fuzzer.frames} frames,"
            f" {fuzzer.requests} of them requests to answer ({fuzzer.oversized} frames over 1 MiB"
            f" not sent); replies {dict(fuzzer.replies)}; ok by method {dict(fuzzer.ok_methods)}"
            f"\nplus {scripted} scripted out-of-order/duplicate-id cases and a flood of 500"
            f" requests (answered in {flood_seconds:.2f} s); longest video gap next door"
            f" {max(gaps.values()):.2f} s"
        )
        if os.environ.get("FUZZ_DEBUG"):  # the most common error replies
            for error, n in fuzzer.errors.most_common(40):
                print(n, error)
        for name, gap in gaps.items():
            assert gap < MAX_FRAME_GAP, f"{name}: no video for {gap:.1f} s during the fuzzing"
        health = sfu_server.health()
        assert health["status"] == "ok"
        assert "Traceback" not in sfu_server.log()
    finally:
        await alice.client.close()
        await bob.client.close()


# ---- server bugs found by the fuzzer: each its own test ----------------------------


async def test_requests_the_json_parser_chokes_on_are_answered(sfu_server: ServerProcess) -> None:
    """Valid JSON requests with an id that Python's json.loads cannot take (nested
    deeper than its recursion limit, an integer over its 4300-digit limit) still
    get a reply (400 is fine), not silence. The probe's reply, which comes after,
    bounds the wait."""
    frames = {
        "nested 1000 deep (arrays)": Raw.deep(1000, "list").text,
        "nested 1000 deep (objects)": Raw.deep(1000, "object").text,
        "nested 100000 deep": Raw.deep(100_000, "list").text,
        "a 5000-digit integer": "9" * 5000,
    }
    async with raw_peers(sfu_server) as connect:
        peer = await connect("parser", "p")
        for n, value in enumerate(frames.values()):
            await peer.send_raw(
                '{"request":true,"id":'
                + str(n)
                + ',"method":"join","data":{"displayName":"d","device":{"x":'
                + value
                + "}}}"
            )
        await peer.send_request("getRouterRtpCapabilities", request_id="probe")
        replies = {r["id"]: r for r in await peer.responses_until("probe")}
        assert replies.pop("probe")["ok"], "the connection is still usable"
        for reply in replies.values():
            check_reply(reply)
        silent = [what for n, what in enumerate(frames) if n not in replies]
        assert not silent, f"no reply (silence) to requests with {silent}"
    assert "Traceback" not in sfu_server.log()


async def test_a_deeply_nested_device_does_not_break_the_room(sfu_server: ServerProcess) -> None:
    """``join`` echoes ``device`` to the others (newPeer, and the ``peers`` of later
    joins). A device nested just shallower than the parser's limit is parsed, but
    must not make join fail with 500 nor kill the connections of peers who join
    after (json.dumps runs out of recursion on the way out)."""
    outcomes: dict[int, tuple[Any, str]] = {}
    async with raw_peers(sfu_server) as connect:
        for depth in range(940, 990, 3):
            room = f"device-{depth}"
            first = await connect(room, "first")
            assert (await first.request("join", {"displayName": "first", "device": {}}))["ok"]
            deep = await connect(room, "deep")
            nested = Raw.deep(depth, "list").text
            await deep.send_raw(
                '{"request":true,"id":"j","method":"join","data":{"displayName":"d","device":{"d":'
                + nested
                + "}}}"
            )
            await deep.send_request("getRouterRtpCapabilities", request_id="probe")
            replies = {r["id"]: r for r in await deep.responses_until("probe")}
            reply = replies.get("j")
            if reply is None:
                break  # too deep to parse: test_requests_the_json_parser_chokes_on_are_answered
            later = await connect(room, "later")
            try:
                later_reply = await later.request("join", {"displayName": "later", "device": {}})
                later_outcome = "ok" if later_reply["ok"] else f"error {later_reply['errorCode']}"
            except AssertionError as error:  # the connection died
                later_outcome = f"connection dropped ({error})"
            first_alive = (await first.request("getRouterRtpCapabilities"))["ok"]
            outcomes[depth] = (
                reply.get("errorCode", "ok"),
                f"{later_outcome}; first peer alive: {first_alive}",
            )
            for peer in (first, deep, later):
                await peer.close()
    assert outcomes, "no depth was parsed at all"
    # A deep device is refused with a clear 400 (the server caps nesting at 32
    # levels), the room lives on and later joins work.
    bad = {d: o for d, o in outcomes.items() if o != (400, "ok; first peer alive: True")}
    assert not bad, "depth -> (the deep join's reply, a later join): " + "; ".join(
        f"{d}: {o}" for d, o in bad.items()
    )
    assert "Traceback" not in sfu_server.log()


async def test_the_request_size_limit_counts_bytes(sfu_server: ServerProcess) -> None:
    """http.max_request_bytes is in bytes: 40,000 'é' are 80,000 bytes of UTF-8 (and
    62,000 emoji 248,000 bytes), over the 65,536-byte limit -> 413."""
    async with raw_peers(sfu_server) as connect:
        peer = await connect("bytes", "p")
        for n, pad in enumerate(["é" * 40_000, "😀" * 62_000]):
            text = json.dumps(
                {
                    "request": True,
                    "id": n,
                    "method": "getRouterRtpCapabilities",
                    "data": {"pad": pad},
                },
                ensure_ascii=False,
            )
            assert len(text) < MAX_REQUEST_BYTES < len(text.encode())
            await peer.send_raw(text)
            reply = await peer.response(n)
            check_reply(reply)
            assert reply["ok"] is False, (
                f"a {len(text.encode())}-byte request ({len(text)} characters): {reply}"
            )
            assert reply["errorCode"] == 413, (
                f"a {len(text.encode())}-byte request ({len(text)} characters): {reply}"
            )


async def test_a_frame_over_the_websocket_cap_does_not_hurt_the_room(
    sfu_server: ServerProcess,
) -> None:
    """Over 1 MB (8 x max_request_bytes, the WebSocket's own cap) the server closes the
    socket (1009) instead of answering 413: the other peers and the server live on."""
    async with raw_peers(sfu_server) as connect:
        other = await connect("huge", "other")
        assert (await other.request("join", {"displayName": "o", "device": {}}))["ok"]
        peer = await connect("huge", "p")
        await peer.send_raw(
            '{"request":true,"id":1,"method":"getRouterRtpCapabilities","data":{"x":"'
            + "x" * 2_000_000
            + '"}}'
        )
        try:
            reply = await peer.response(1, timeout=5.0)
        except AssertionError:  # closed
            msg = await peer.wait_closed()
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg
            assert msg.data == 1009, msg
        else:
            assert reply.get("errorCode") == 413, reply
        assert (await other.request("getRouterRtpCapabilities"))["ok"]
    assert sfu_server.health()["status"] == "ok"
    assert "Traceback" not in sfu_server.log()


async def test_resume_without_a_session_gets_404(sfu_server: ServerProcess) -> None:
    """docs/protocol.md: resume with no session to resume (expired or never joined) gets
    404, after which the client joins afresh."""
    async with raw_peers(sfu_server) as connect:
        keeper = await connect("resume", "keeper")  # keeps the room open
        assert (await keeper.request("join", {"displayName": "k", "device": {}}))["ok"]

        never = await connect("resume", "never-joined")
        reply = await never.request("resume", {"sessionToken": "made-up"})
        check_reply(reply)
        never_code = reply.get("errorCode")

        ghost = await connect("resume", "ghost")
        joined = await ghost.request("join", {"displayName": "g", "device": {}})
        token = joined["data"]["sessionToken"]
        await ghost.close()  # a clean goodbye: the session ends at once
        await asyncio.sleep(0.3)
        back = await connect("resume", "ghost")
        reply = await back.request("resume", {"sessionToken": token})
        check_reply(reply)
        assert (never_code, reply["errorCode"]) == (404, 404), (
            f"resume with no session: never joined -> {never_code}, session ended -> {reply}"
        )
        # The client then starts over.
        assert (await back.request("join", {"displayName": "g", "device": {}}))["ok"]


async def test_a_stray_response_with_an_unhashable_id_is_ignored(sfu_server: ServerProcess) -> None:
    """A response nobody asked for is ignored, whatever its id, and the connection stays open."""
    async with raw_peers(sfu_server) as connect:
        other = await connect("stray", "other")
        assert (await other.request("join", {"displayName": "o", "device": {}}))["ok"]
        peer = await connect("stray", "p")
        assert (await peer.request("join", {"displayName": "p", "device": {}}))["ok"]
        for stray_id in ([], {}, [1], {"a": 1}):
            await peer.send_raw(
                json.dumps({"response": True, "id": stray_id, "ok": True, "data": {}})
            )
            reply = await peer.request("getRouterRtpCapabilities")
            assert reply["ok"], f"after a stray response with id {stray_id!r}: {reply}"
        assert other.notifications == [] or all(
            n["method"] != "peerClosed" for n in other.notifications
        ), other.notifications
    assert "Traceback" not in sfu_server.log()


# ---- 2. limits ------------------------------------------------------------------


@small_limits
async def test_request_rate_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        peer = await connect("rate", "p")
        started = time.monotonic()
        for _ in range(30):
            await peer.send_request("getRouterRtpCapabilities")
        await peer.send_request("getRouterRtpCapabilities", request_id="last")
        replies = await peer.responses_until("last", timeout=5.0)
        elapsed = time.monotonic() - started
        assert len(replies) == 31
        for reply in replies:
            check_reply(reply, "rate")
        limited = [r for r in replies if not r["ok"]]
        # A burst of 10, then 5 a second while the 31 are being handled.
        allowed = 10 + 5 * elapsed + 1
        assert 31 - len(limited) <= allowed, f"{31 - len(limited)} of 31 passed in {elapsed:.2f} s"
        assert len(limited) >= 10, f"only {len(limited)} of 31 rate-limited in {elapsed:.2f} s"
        assert all(r["errorCode"] == 429 for r in limited), limited
        reason = limited[0]["errorReason"]
        assert "too many requests" in reason, reason
        assert "5" in reason, reason
        await asyncio.sleep(2.0)  # 10 tokens back
        for _ in range(8):
            reply = await peer.request("getRouterRtpCapabilities")
            assert reply["ok"], f"still limited after 2 s: {reply}"


@small_limits
async def test_producers_per_peer_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        peer = await connect("producers", "p")
        created = await peer.request(
            "createWebRtcTransport", {"producing": True, "consuming": False}
        )
        transport = created["data"]["id"]
        assert (await peer.request("join", {"displayName": "p", "device": {}}))["ok"]
        first = await peer.request(
            "produce", {"transportId": transport, "kind": "audio", "rtpParameters": AUDIO_PARAMS}
        )
        assert first["ok"], first
        reason = await peer.expect_error(
            "produce",
            {"transportId": transport, "kind": "video", "rtpParameters": VIDEO_PARAMS},
            429,
        )
        assert "at most 1 producer" in reason, reason
        # Closing one frees the slot.
        assert (await peer.request("closeProducer", {"producerId": first["data"]["id"]}))["ok"]
        again = await peer.request(
            "produce", {"transportId": transport, "kind": "video", "rtpParameters": VIDEO_PARAMS}
        )
        assert again["ok"], again
    assert sfu_server.health()["producers"] == 0


@small_limits
async def test_transports_per_peer_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        peer = await connect("transports", "p")
        for _ in range(2):
            assert (await peer.request("createWebRtcTransport", {"producing": True}))["ok"]
        reason = await peer.expect_error("createWebRtcTransport", {"consuming": True}, 429)
        assert "at most 2 transports" in reason, reason
        assert (await peer.request("getRouterRtpCapabilities"))["ok"]
        assert sfu_server.health()["transports"] == 2


@small_limits
async def test_peers_per_room_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        first = await connect("full", "first")
        second = await connect("full", "second")
        third = await connect("full", "third")
        for peer in (first, second):
            assert (await peer.request("join", {"displayName": "x", "device": {}}))["ok"]
        reason = await third.expect_error("join", {"displayName": "third", "device": {}}, 429)
        assert "room is full" in reason, reason
        assert "2" in reason, reason
        assert (await third.request("getRouterRtpCapabilities"))["ok"]
        # A seat frees up when a peer leaves.
        await first.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while True:
            reply = await third.request("join", {"displayName": "third", "device": {}})
            if reply["ok"] or loop.time() > deadline:
                break
            await asyncio.sleep(0.3)
        assert reply["ok"], f"the room stayed full after a peer left: {reply}"


@small_limits
async def test_rooms_per_server_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        one = await connect("room-1", "p")
        two = await connect("room-2", "p")
        # A reply means the room exists; health counts only rooms whose router is made.
        for peer in (one, two):
            assert (await peer.request("getRouterRtpCapabilities"))["ok"]
        third = await connect("room-3", "p")
        msg = await third.wait_closed(5.0)
        assert msg.type == aiohttp.WSMsgType.CLOSE, msg
        assert msg.data == 4029, msg
        assert third.ws.close_code == 4029, msg
        assert "limit of 2 rooms" in (msg.extra or ""), msg.extra
        assert sfu_server.health()["rooms"] == 2
        # Once a room closes, a new one may open.
        await one.close()
        assert await wait_until(lambda: sfu_server.health()["rooms"] == 1, timeout=3)
        fourth = await connect("room-4", "p")
        assert (await fourth.request("getRouterRtpCapabilities"))["ok"]


@pytest.mark.parametrize(
    "server_overrides",
    [{**FUZZ_LIMITS, "media": {"rtc_min_port": 45000, "rtc_max_port": 45009}}],
    ids=["10-ports"],
)
async def test_out_of_udp_ports_is_503_and_recovers(sfu_server: ServerProcess) -> None:
    """Connections that never join are not bounded by max_peers_per_room: with 4
    transports each they can take every UDP port. Then createWebRtcTransport gets
    503, and the ports come back when they leave."""
    async with raw_peers(sfu_server) as connect:
        hogs = [await connect("ports", f"hog-{n}") for n in range(3)]
        replies = [
            await hog.request("createWebRtcTransport", {"producing": True})
            for hog in hogs
            for _ in range(4)
        ]
        for reply in replies:
            check_reply(reply, "createWebRtcTransport")
        created = sum(r["ok"] for r in replies)
        # 10 unless another process on this machine holds some of those ports.
        assert 1 <= created <= 10, replies
        assert {r["errorCode"] for r in replies if not r["ok"]} == {503}
        assert "no free UDP port" in next(r["errorReason"] for r in replies if not r["ok"])
        hog_transports = sum(r["ok"] for r in replies[:4])
        await hogs[0].close()
        assert await wait_until(
            lambda: sfu_server.health()["transports"] == created - hog_transports, timeout=3
        )
        reply = await hogs[2].request("createWebRtcTransport", {"producing": True})
        assert reply["ok"], reply
    assert "Traceback" not in sfu_server.log()


# ---- 3. identity -------------------------------------------------------------------


async def test_a_peer_cannot_touch_another_peers_objects(sfu_server: ServerProcess) -> None:
    alice = await join(sfu_server, "identity", "alice", 440)
    bob = await join(sfu_server, "identity", "bob", 660)
    try:
        assert await bob.client.wait_for_consumers(2, timeout=15)
        assert await alice.client.wait_for_consumers(2, timeout=15)
        sink = bob.sink_for("alice", "video")
        assert await sink.wait_frames(5, timeout=20)
        bob_events: list[str] = []
        for event in ("consumerclosed", "consumerpaused", "peerclosed"):
            bob.client.on(event, lambda *args, event=event: bob_events.append(event))

        alice_transports = [alice.client.send_transport.id, alice.client.recv_transport.id]
        bob_transports = [bob.client.send_transport.id, bob.client.recv_transport.id]
        alice_producers = list(alice.producers.values())
        bob_consumers = [bob.consumer_for("alice", kind).id for kind in ("audio", "video")]
        alice_consumers = [alice.consumer_for("bob", kind).id for kind in ("audio", "video")]

        async with raw_peers(sfu_server) as connect:
            eve = await connect("identity", "eve")
            caps = (await eve.request("getRouterRtpCapabilities"))["data"]
            own = (await eve.request("createWebRtcTransport", {"producing": True}))["data"]["id"]
            assert (
                await eve.request(
                    "join", {"displayName": "eve", "device": {}, "rtpCapabilities": caps}
                )
            )["ok"]
            attempts = 0

            async def forbidden(method: str, data: dict[str, Any]) -> None:
                nonlocal attempts
                reason = await eve.expect_error(method, data, 403)
                assert "another peer" in reason, reason
                attempts += 1

            for transport in alice_transports + bob_transports:
                await forbidden(
                    "connectWebRtcTransport",
                    {"transportId": transport, "dtlsParameters": DTLS_PARAMS},
                )
                await forbidden("restartIce", {"transportId": transport})
                await forbidden("getTransportStats", {"transportId": transport})
                await forbidden(
                    "produce",
                    {"transportId": transport, "kind": "audio", "rtpParameters": AUDIO_PARAMS},
                )
            for producer in alice_producers:
                for method in (
                    "pauseProducer",
                    "closeProducer",
                    "resumeProducer",
                    "getProducerStats",
                ):
                    await forbidden(method, {"producerId": producer})
            for consumer in bob_consumers + alice_consumers:
                for method in (
                    "pauseConsumer",
                    "resumeConsumer",
                    "requestConsumerKeyFrame",
                    "getConsumerStats",
                ):
                    await forbidden(method, {"consumerId": consumer})
                await forbidden("setConsumerPriority", {"consumerId": consumer, "priority": 1})
                await forbidden(
                    "setConsumerPreferredLayers", {"consumerId": consumer, "spatialLayer": 0}
                )
            # Guessed ids are just unknown.
            for method, key in (
                ("pauseProducer", "producerId"),
                ("restartIce", "transportId"),
                ("pauseConsumer", "consumerId"),
            ):
                await eve.expect_error(method, {key: str(uuid.uuid4())}, 404)
            # The same as notifications (no reply possible): silently refused.
            for producer in alice_producers:
                await eve.notify("pauseProducer", {"producerId": producer})
                await eve.notify("closeProducer", {"producerId": producer})
            for consumer in bob_consumers:
                await eve.notify("pauseConsumer", {"consumerId": consumer})
            assert (await eve.request("getTransportStats", {"transportId": own}))[
                "ok"
            ]  # all handled

            # An impostor with alice's peerId and a wrong token.
            impostor = await connect("identity", "alice")
            reason = await impostor.expect_error("resume", {"sessionToken": "guess"}, 403)
            assert "token" in reason.lower(), reason
            await impostor.close()

            # alice and bob did not notice a thing, and alice's media still flows.
            await asyncio.sleep(0.5)
            assert bob_events == [], bob_events
            assert "alice" in bob.client.peers
            for kind in ("audio", "video"):
                assert not bob.consumer_for("alice", kind).paused
            count = sink.frames
            assert await sink.wait_frames(count + 15, timeout=10), "alice's video stopped"
            assert await alice.sink_for("bob", "video").wait_frames(
                alice.sink_for("bob", "video").frames + 15, timeout=10
            )
            stats = await alice.client.request(
                "getProducerStats", {"producerId": alice.producers["video"]}
            )
            assert stats[0]["packetCount"] > 0
            health = sfu_server.health()
            assert health["producers"] == 4, health
            assert health["peers"] == 3, health
            print(
                f"\nidentity: {attempts} forbidden attempts, all 403; the victims' media kept flowing"
            )
        assert "Traceback" not in sfu_server.log()
    finally:
        await alice.client.close()
        await bob.client.close()
