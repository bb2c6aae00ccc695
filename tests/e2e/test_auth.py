"""Access control end to end: a server with API keys, tokens minted by
livekit-api's AccessToken (the real SDK), refusals through real WebSocket
upgrades, and grants enforced on real bots producing and consuming."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.api import AccessToken, VideoGrants

from sfu.client import (
    AccessRefusedError,
    PatternVideoTrack,
    ProtooError,
    SfuClient,
    ToneAudioTrack,
)

from ..conftest import LOOPBACK, ServerProcess, start_server, stop_server
from ..hostile_tokens import hostile_tokens
from .fuzzing import AUDIO_PARAMS as OPUS
from .fuzzing import DTLS_PARAMS as DTLS
from .helpers import RawPeer, join, wait_until

KEY = "APIe2e"
SECRET = "e2e-secret-" + "x" * 40
OTHER_KEY = "APIfile"
OTHER_SECRET = "file-secret-" + "y" * 40
ROOM = "auth-room"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One key from the config file, one from SFU_API_KEY / SFU_API_SECRET."""
    server = start_server(
        tmp_path_factory.mktemp("auth"),
        env={"SFU_API_KEY": KEY, "SFU_API_SECRET": SECRET},
        extra_toml=f'[auth]\nkeys = {{ {OTHER_KEY} = "{OTHER_SECRET}" }}\n',
    )
    try:
        yield server
    finally:
        stop_server(server)


def token(
    identity: str,
    room: str = ROOM,
    *,
    key: str = KEY,
    secret: str = SECRET,
    ttl: datetime.timedelta = datetime.timedelta(hours=1),
    name: str = "",
    **grants: Any,
) -> str:
    grants.setdefault("room_join", True)
    return (
        AccessToken(key, secret)
        .with_identity(identity)
        .with_name(name)
        .with_ttl(ttl)
        .with_grants(VideoGrants(room=room, **grants))
        .to_jwt()
    )


UPGRADE_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    "Sec-WebSocket-Protocol": "protoo",
}


def upgrade(
    server: ServerProcess, query: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """A WebSocket upgrade request; the status and JSON body of its refusal."""
    url = f"{server.http_url}/?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url, headers={**UPGRADE_HEADERS, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, {}
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if body.startswith(b"{") else {"raw": body}


def now() -> int:
    return int(time.time())


def claims(**changes: Any) -> dict[str, Any]:
    return {
        "iss": KEY,
        "sub": "alice",
        "nbf": now(),
        "exp": now() + 600,
        "video": {"room": ROOM, "roomJoin": True},
        **changes,
    }


REFUSALS: list[tuple[str, dict[str, str], dict[str, str], int]] = [
    ("no_token", {}, {}, 401),
    ("bad_signature", {"access_token": token("alice", secret="z" * 40)}, {}, 401),
    ("unknown_key", {"access_token": token("alice", key="APInope")}, {}, 401),
    ("expired", {"access_token": token("alice", ttl=datetime.timedelta(minutes=-5))}, {}, 401),
    (
        "not_yet_valid",
        {"access_token": jwt.encode(claims(nbf=now() + 3600), SECRET, algorithm="HS256")},
        {},
        401,
    ),
    ("no_room_join", {"access_token": token("alice", room_join=False)}, {}, 403),
    ("wrong_room", {"access_token": token("alice", room="elsewhere")}, {}, 403),
    ("wrong_identity", {"access_token": token("mallory")}, {}, 403),
    ("wrong_identity", {}, {"Authorization": f"Bearer {token('mallory')}"}, 403),
    ("bad_signature", {}, {"Authorization": f"Bearer {token('alice', secret='z' * 40)}"}, 401),
]


@pytest.mark.parametrize(("reason", "query", "headers", "status"), REFUSALS)
def test_each_refusal_before_the_upgrade(
    auth_server: ServerProcess,
    reason: str,
    query: dict[str, str],
    headers: dict[str, str],
    status: int,
) -> None:
    got, body = upgrade(auth_server, {"roomId": ROOM, "peerId": "alice", **query}, headers)
    assert (got, body.get("reason")) == (status, reason), body
    assert body["message"]
    assert body["error"] == ("unauthorized" if status == 401 else "forbidden")


def test_admission_answers_what_the_upgrade_would_for_browsers(auth_server: ServerProcess) -> None:
    """GET /admission: the same check and body as the upgrade, readable by a
    browser's fetch (a refused WebSocket hides its status from the page)."""

    def admission(query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        url = f"{auth_server.http_url}/admission?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    for reason, query, headers, status in REFUSALS:
        if headers:
            continue  # a browser's link carries the token in the query
        got, body = admission({"roomId": ROOM, "peerId": "alice", **query})
        assert (got, body.get("reason")) == (status, reason), body
    assert admission({"roomId": ROOM, "access_token": token("alice")}) == (200, {"peerId": "alice"})


async def test_refusals_are_counted_and_health_says_auth_on(auth_server: ServerProcess) -> None:
    assert auth_server.health()["auth"] == "on"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                f"{auth_server.ws_url}/?roomId={ROOM}&peerId=alice", protocols=("protoo",)
            )
        assert refused.value.status == 401
        async with session.get(f"{auth_server.http_url}/metrics") as response:
            metrics = await response.text()
    assert 'sfu_websocket_refusals_total{reason="no_token"}' in metrics
    line = next(ln for ln in metrics.splitlines() if 'refusals_total{reason="no_token"}' in ln)
    assert float(line.split()[-1]) >= 1


async def test_a_token_admits_by_query_or_bearer_and_sub_is_the_peer(
    auth_server: ServerProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        by_header = await session.ws_connect(
            f"{auth_server.ws_url}/?roomId={ROOM}",
            protocols=("protoo",),
            headers={"Authorization": f"Bearer {token('header-peer')}"},
        )
        by_query = await session.ws_connect(
            f"{auth_server.ws_url}/?roomId={ROOM}&access_token={token('query-peer')}",
            protocols=("protoo",),
        )
        first, second = RawPeer(by_header), RawPeer(by_query)
        try:
            assert (await first.request("join", {"displayName": "h"}))["ok"]
            reply = await second.request("join", {"displayName": "q"})
            assert reply["ok"]
            assert [p["id"] for p in reply["data"]["peers"]] == ["header-peer"]
        finally:
            await first.close()
            await second.close()


def client(server: ServerProcess, identity: str, room: str, **grants: Any) -> SfuClient:
    """A bot with a token for ``room`` with ``grants``."""
    return SfuClient(
        server.ws_url,
        room,
        identity,
        display_name=identity,
        ice_addresses=LOOPBACK,
        access_token=token(identity, room, **grants),
    )


async def test_can_publish_false_and_sources_refuse_produce(auth_server: ServerProcess) -> None:
    viewer = client(auth_server, "viewer", room="grants-pub", can_publish=False)
    mic_only = client(
        auth_server, "mic-only", room="grants-pub", can_publish_sources=["microphone"]
    )
    try:
        await viewer.join()
        with pytest.raises(ProtooError) as error:
            await viewer.produce(ToneAudioTrack(frequency=440))
        assert error.value.code == 403
        await mic_only.join()
        await mic_only.produce(ToneAudioTrack(frequency=440), {"source": "mic"})
        with pytest.raises(ProtooError) as error:
            await mic_only.produce(PatternVideoTrack(160, 120, fps=10), {"source": "webcam"})
        assert error.value.code == 403
        assert "camera" in error.value.reason
    finally:
        await viewer.close()
        await mic_only.close()


async def test_can_subscribe_false_gets_no_consumers(auth_server: ServerProcess) -> None:
    room = "grants-sub"
    deaf = client(auth_server, "deaf", room=room, can_subscribe=False)
    listener = client(auth_server, "listener", room=room)
    publisher = client(auth_server, "publisher", room=room)
    try:
        await deaf.join()
        await listener.join()
        await publisher.join()
        await publisher.produce(ToneAudioTrack(frequency=440))
        await publisher.produce(PatternVideoTrack(160, 120, fps=10))
        assert await listener.wait_for_consumers(2, timeout=15)
        # The server's own count settles on the listener's two: none was made for deaf.
        assert await wait_until(lambda: auth_server.health()["consumers"] == 2, timeout=10)
        assert not deaf.consumers
        # It may still publish: the others consume it.
        await deaf.produce(ToneAudioTrack(frequency=660))
        assert await listener.wait_for_consumers(3, timeout=15)
    finally:
        for bot in (deaf, listener, publisher):
            await bot.close()


async def test_hidden_peer_is_unseen_cannot_publish_and_still_consumes(
    auth_server: ServerProcess,
) -> None:
    room = "grants-hidden"
    alice = client(auth_server, "alice", room=room)
    recorder = client(auth_server, "recorder", room=room, hidden=True)
    bob = client(auth_server, "bob", room=room)
    try:
        await alice.join()
        await alice.produce(ToneAudioTrack(frequency=440))
        assert [p["id"] for p in await recorder.join()] == ["alice"]
        assert await recorder.wait_for_consumers(1, timeout=15)
        with pytest.raises(ProtooError) as error:
            await recorder.produce(ToneAudioTrack(frequency=660))
        assert error.value.code == 403
        assert [p["id"] for p in await bob.join()] == ["alice"]
        assert await wait_until(lambda: "bob" in alice.peers, 5)
        assert "recorder" not in alice.peers
        assert "recorder" not in bob.peers
    finally:
        for bot in (recorder, bob, alice):
            await bot.close()


async def test_can_publish_data_false_refuses_produce_data(auth_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        peers = []
        for identity, can_publish_data in (("nodata", False), ("data", True)):
            minted = token(identity, "grants-data", can_publish_data=can_publish_data)
            ws = await session.ws_connect(
                f"{auth_server.ws_url}/?roomId=grants-data&peerId={identity}&access_token={minted}",
                protocols=("protoo",),
            )
            peers.append(RawPeer(ws))
        try:
            await peers[0].expect_error("produceData", {}, 403)
            # Allowed: data channels are still unsupported (406).
            await peers[1].expect_error("produceData", {}, 406)
        finally:
            for peer in peers:
                await peer.close()


# ---- hostile tokens ----------------------------------------------------------------

hostile = hostile_tokens(KEY, SECRET, ROOM)


def upgrade_as_alice(
    server: ServerProcess, bad: str, *, as_header: bool
) -> tuple[int, dict[str, Any]]:
    """An upgrade to ROOM as alice with ``bad`` as the query's token or as a bearer."""
    query = {"roomId": ROOM, "peerId": "alice"}
    if as_header:
        return upgrade(server, query, {"Authorization": f"Bearer {bad}"})
    return upgrade(server, {**query, "access_token": bad})


@settings(
    # Bounded against the real server; tests/unit/test_auth.py runs many more.
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bad=hostile, as_header=st.booleans())
def test_hostile_tokens_are_401_or_403(
    auth_server: ServerProcess, bad: str, as_header: bool
) -> None:
    status, body = upgrade_as_alice(auth_server, bad, as_header=as_header)
    assert status in (401, 403), (status, body, bad[:200])
    assert body.get("reason"), body


@pytest.mark.parametrize("size", [4097, 8000, 9000, 20_000, 200_000])
@pytest.mark.parametrize("as_header", [False, True], ids=["query", "header"])
def test_oversize_tokens_are_refused_cleanly(
    auth_server: ServerProcess, size: int, as_header: bool
) -> None:
    """Over our 4 KiB token cap: 401. Over aiohttp's 8190-byte request line or
    header field: its own 4xx, before any of our code runs. Never a 5xx."""
    try:
        status, body = upgrade_as_alice(auth_server, "A" * size, as_header=as_header)
    except (ConnectionError, urllib.error.URLError) as dropped:
        # The server may answer and close before reading all of a 200 kB request.
        pytest.fail(f"no HTTP answer to a {size}-byte token: {dropped!r}")
    print(f"\n{size}-byte token in the {'header' if as_header else 'query'}: HTTP {status}")
    assert 400 <= status < 500, (status, body)
    if size <= 8000:
        assert (status, body.get("reason")) == (401, "malformed_token"), body


async def test_after_hostile_tokens_the_server_serves_a_normal_join(
    auth_server: ServerProcess,
) -> None:
    """Runs after the property test (file order): the process is alive, logged
    no errors, and a room with media works."""
    assert auth_server.process.poll() is None
    bots = [client(auth_server, name, room="after-hostile") for name in ("one", "two")]
    try:
        for bot in bots:
            await bot.join()
        await bots[0].produce(ToneAudioTrack(frequency=440))
        assert await bots[1].wait_for_consumers(1, timeout=15)
    finally:
        for bot in bots:
            await bot.close()
    log = auth_server.log()
    assert " ERROR " not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


# ---- open mode -----------------------------------------------------------------


async def test_open_mode_ignores_tokens_and_says_auth_off(
    sfu_server: ServerProcess, tmp_path: Path
) -> None:
    assert sfu_server.health()["auth"] == "off"
    assert "access control is off" in sfu_server.log()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"{sfu_server.ws_url}/?roomId=open&peerId=p&access_token=garbage",
            protocols=("protoo",),
        )
        peer = RawPeer(ws)
        try:
            assert (await peer.request("join", {"displayName": "p"}))["ok"]
        finally:
            await peer.close()
    participant = await join(sfu_server, "open", "bot", 440, video=False)
    await participant.client.close()


def test_short_secret_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"auth\.keys\.k: the secret is 5 bytes"):
        start_server(tmp_path, extra_toml='[auth]\nkeys = { k = "short" }\n')


async def test_sfu_client_join_refused_raises_access_refused(auth_server: ServerProcess) -> None:
    bot = SfuClient(
        auth_server.ws_url,
        "client-refused",
        "nobody",
        ice_addresses=LOOPBACK,
        access_token=token("nobody", "client-refused", secret="z" * 40),
    )
    with pytest.raises(AccessRefusedError) as refused:
        await bot.join()
    assert refused.value.status == 401
    assert "HTTP 401" in refused.value.message
    assert bot.closed


@pytest.mark.parametrize(
    ("status", "bad_token"),
    [
        (401, token("alice", "client-reconnect", secret="z" * 40)),
        (403, token("alice", "elsewhere")),
    ],
    ids=["401", "403"],
)
async def test_sfu_client_does_not_reconnect_after_401_or_403(
    auth_server: ServerProcess, status: int, bad_token: str
) -> None:
    """The WebSocket drops; the reconnection's upgrade is refused: fatal at once, no retry."""
    bot = client(auth_server, "alice", "client-reconnect")
    events: list[str] = []
    fatal = asyncio.Event()
    for name in ("disconnected", "reconnecting", "reconnected"):
        bot.on(name, lambda *_, name=name: events.append(name))
    bot.on("fatal", lambda *_: fatal.set())
    try:
        await bot.join()
        bot.access_token = bad_token  # e.g. the token expired while connected
        bot._drop_connection_for_test()
        await asyncio.wait_for(fatal.wait(), timeout=10)
        assert bot.fatal_reason is not None
        assert f"HTTP {status}" in bot.fatal_reason
        assert events == ["disconnected", "reconnecting"]
        assert await wait_until(lambda: bot.closed, timeout=5)
    finally:
        await bot.close()


# ---- identity with tokens ------------------------------------------------------


async def test_a_tokened_peer_cannot_touch_another_peers_objects(
    auth_server: ServerProcess,
) -> None:
    """alice and bob hold valid tokens for the same room; bob uses alice's (and
    carol's) ids: every attempt is a 403 and alice's media still reaches carol."""
    room = "auth-identity"
    alice = await join(auth_server, room, "alice", 440, access_token=token("alice", room))
    bob = await join(auth_server, room, "bob", 660, access_token=token("bob", room))
    carol = await join(
        auth_server, room, "carol", 0, audio=False, video=False, access_token=token("carol", room)
    )
    try:
        assert await carol.client.wait_for_consumers(4, timeout=20)
        sink = carol.sink_for("alice", "video")
        assert await sink.wait_frames(5, timeout=20)
        assert alice.client.send_transport is not None
        assert alice.client.recv_transport is not None
        alice_transports = [alice.client.send_transport.id, alice.client.recv_transport.id]
        carols_consumers = [carol.consumer_for("alice", kind).id for kind in ("audio", "video")]
        attempts: list[tuple[str, dict[str, Any]]] = []
        for transport in alice_transports:
            attempts += [
                ("connectWebRtcTransport", {"transportId": transport, "dtlsParameters": DTLS}),
                ("restartIce", {"transportId": transport}),
                ("getTransportStats", {"transportId": transport}),
                (
                    "produce",
                    {"transportId": transport, "kind": "audio", "rtpParameters": OPUS},
                ),
            ]
        for producer in alice.producers.values():
            for method in ("pauseProducer", "closeProducer", "resumeProducer", "getProducerStats"):
                attempts.append((method, {"producerId": producer}))
        for consumer in carols_consumers:
            for method in (
                "pauseConsumer",
                "resumeConsumer",
                "requestConsumerKeyFrame",
                "getConsumerStats",
            ):
                attempts.append((method, {"consumerId": consumer}))
        for method, data in attempts:
            with pytest.raises(ProtooError) as refused:
                await bob.client.request(method, data)
            assert refused.value.code == 403, (method, refused.value)
            assert "another peer" in refused.value.reason, (method, refused.value)

        # alice's media is untouched: carol keeps decoding it, nothing paused.
        for kind in ("audio", "video"):
            assert not carol.consumer_for("alice", kind).paused
        assert await sink.wait_frames(sink.frames + 15, timeout=10), "alice's video stopped"
        assert auth_server.health()["producers"] == 4
        print(f"\ntokened identity: {len(attempts)} attempts, all 403; alice's media flowed on")
    finally:
        for participant in (alice, bob, carol):
            await participant.client.close()
