"""Access control end to end: a server with API keys, tokens minted by
livekit-api's AccessToken (the real SDK), refusals through real WebSocket
upgrades, and grants enforced on real bots producing and consuming."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
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
    **grants: Any,
) -> str:
    grants.setdefault("room_join", True)
    return (
        AccessToken(key, secret)
        .with_identity(identity)
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
        # Nor data consumers: the publisher's chat reaches the listener alone.
        await publisher.send_data("hello")
        assert await wait_until(lambda: len(listener.data_consumers) == 1, timeout=15)
        assert await wait_until(lambda: auth_server.health()["dataConsumers"] == 1, timeout=10)
        assert not deaf.data_consumers
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
            # Allowed by the token: refused only because it has not joined.
            await peers[1].expect_error("produceData", {}, 409)
        finally:
            for peer in peers:
                await peer.close()


# ---- hostile tokens ----------------------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: Any, signature: str = "") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{signature}"


def hs256(payload: Any, secret: str = SECRET) -> str:
    """Any JSON payload, validly signed (PyJWT will not encode some bad claims)."""
    unsigned = forged({"alg": "HS256", "typ": "JWT"}, payload)[:-1]
    mac = hmac.new(secret.encode(), unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{b64(mac)}"


# Never admitted: every base token is for another room than the one asked for,
# so a mutation that happens to keep it valid is still a 403.
BASE_TOKEN = token("alice", room="not-this-room")

mutated = st.builds(
    lambda parts, segment, index, char: ".".join(
        part
        if i != segment
        else part[: index % (len(part) + 1)] + char + part[index % (len(part) + 1) + 1 :]
        for i, part in enumerate(parts)
    ),
    st.just(BASE_TOKEN.split(".")),
    st.integers(0, 2),
    st.integers(0, 400),
    st.sampled_from([*B64, ".", "=", "%", "+", "/", " ", ""]),
)
alg_none = st.builds(lambda c: forged({"alg": "none", "typ": "JWT"}, c), st.just(claims()))
other_algorithm = st.builds(
    lambda alg: jwt.encode(claims(), SECRET + "x" * 40, algorithm=alg),
    st.sampled_from(["HS384", "HS512"]),
)
other_key = st.builds(
    lambda secret: jwt.encode(claims(), secret, algorithm="HS256"),
    st.text(min_size=32, max_size=64).filter(lambda s: s != SECRET),
)
huge = st.one_of(
    st.text(alphabet=B64 + ".", min_size=4097, max_size=6000),
    st.builds(
        lambda n: jwt.encode(claims(metadata="m" * n), SECRET, algorithm="HS256"),
        st.integers(3100, 4400),
    ),
)
SOURCES = {"camera", "microphone", "screen_share", "screen_share_audio"}
# (null is absent, as in LiveKit: the default.)
not_bool = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
wrong_grants = (
    st.builds(
        lambda name, value: hs256(claims(video={"room": ROOM, "roomJoin": True, name: value})),
        st.sampled_from(["roomJoin", "canPublish", "canSubscribe", "canPublishData", "hidden"]),
        not_bool,
    )
    | st.builds(
        lambda field, value: hs256(claims(**{field: value})),
        st.sampled_from(["sub", "name", "metadata", "video", "iss", "exp", "nbf"]),
        st.one_of(
            st.lists(st.integers(), max_size=2),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        ),
    )
    | st.builds(
        lambda field: hs256(claims(**{field: "soon"})),
        st.sampled_from(["exp", "nbf"]),
    )
    | st.builds(
        lambda sources: hs256(
            claims(video={"room": ROOM, "roomJoin": True, "canPublishSources": sources})
        ),
        st.one_of(
            st.text(max_size=5),
            st.lists(st.text(max_size=8), min_size=1, max_size=3).filter(
                lambda names: not set(names) <= SOURCES
            ),
        ),
    )
)
garbage = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=300)

hostile = st.one_of(mutated, alg_none, other_algorithm, other_key, huge, wrong_grants, garbage)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bad=hostile, as_header=st.booleans())
def test_hostile_tokens_are_401_or_403(
    auth_server: ServerProcess, bad: str, as_header: bool
) -> None:
    query = {"roomId": ROOM, "peerId": "alice"}
    headers = {}
    if as_header:
        headers["Authorization"] = f"Bearer {bad}"
    else:
        query["access_token"] = bad
    status, body = upgrade(auth_server, query, headers)
    assert status in (401, 403), (status, body, bad[:200])
    assert body.get("reason"), body


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
