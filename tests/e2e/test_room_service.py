"""RoomService (LiveKit's Twirp API) end to end: livekit-api's LiveKitAPI as the
real client (protobuf) and plain JSON over aiohttp, against a server process
with API keys, with real bots in the rooms seeing the effects (peerClosed,
consumerPaused, consumerClosed, the 4003 close); and the room lifecycle
(auto_create off, empty timeouts, max_participants)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from livekit.api import AccessToken, LiveKitAPI, TwirpError, VideoGrants
from livekit.api.room_service import RoomService
from livekit.protocol import models
from livekit.protocol import room as proto

from sfu.client import PatternVideoTrack, ProtooError, SfuClient, ToneAudioTrack
from sfu.client.data import DataMessage

from ..conftest import LOOPBACK, ServerProcess, running_server
from .helpers import wait_until

KEY = "APIroomservice"
SECRET = "roomservice-secret-" + "r" * 40
PREFIX = "/twirp/livekit.RoomService/"


KEYS = {"SFU_API_KEY": KEY, "SFU_API_SECRET": SECRET}


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("roomservice"), env=KEYS) as server:
        yield server


@pytest.fixture(scope="module")
def managed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Only CreateRoom makes rooms; they close 2 s after they are empty."""
    overrides = {"rooms": {"auto_create": False, "empty_timeout": 2}}
    with running_server(
        tmp_path_factory.mktemp("managed"), overrides=overrides, env=KEYS
    ) as server:
        yield server


@pytest.fixture
async def lkapi(keyed_server: ServerProcess) -> AsyncIterator[LiveKitAPI]:
    api = LiveKitAPI(keyed_server.http_url, KEY, SECRET)
    try:
        yield api
    finally:
        await api.aclose()


def token(identity: str = "admin", secret: str = SECRET, **grants: Any) -> str:
    return (
        AccessToken(KEY, secret)
        .with_identity(identity)
        .with_ttl(datetime.timedelta(minutes=10))
        .with_grants(VideoGrants(**grants))
        .to_jwt()
    )


def bot(server: ServerProcess, room: str, identity: str) -> SfuClient:
    return SfuClient(
        server.ws_url,
        room,
        identity,
        display_name=identity,
        ice_addresses=LOOPBACK,
        access_token=token(identity, room=room, room_join=True),
    )


async def call_json(
    server: ServerProcess,
    method: str,
    body: bytes | str,
    *,
    bearer: str | None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.http_url + PREFIX + method, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def collect(client: SfuClient, event: str) -> list[Any]:
    seen: list[Any] = []
    client.on(event, lambda *args: seen.append(args[0] if len(args) == 1 else args))
    return seen


# ---- refusals --------------------------------------------------------------------


async def test_twirp_errors_are_json_with_their_status(keyed_server: ServerProcess) -> None:
    admin_a = token(room_admin=True, room="room-a")
    cases: list[tuple[str, str | bytes, str | None, str, int, str]] = [
        ("ListRooms", "{}", None, "application/json", 401, "unauthenticated"),
        ("ListRooms", "{}", "not.a.jwt", "application/json", 401, "unauthenticated"),
        ("ListRooms", "{}", token(secret="w" * 40), "application/json", 401, "unauthenticated"),
        ("ListRooms", "{}", admin_a, "application/json", 403, "permission_denied"),
        ("CreateRoom", '{"name": "x"}', admin_a, "application/json", 403, "permission_denied"),
        ("DeleteRoom", '{"room": "x"}', admin_a, "application/json", 403, "permission_denied"),
        (
            "ListParticipants",
            '{"room": "room-b"}',
            admin_a,
            "application/json",
            403,
            "permission_denied",
        ),
        ("ListParticipants", '{"room": "room-a"}', admin_a, "application/json", 404, "not_found"),
        ("ListRooms", "{not json", token(room_list=True), "application/json", 400, "malformed"),
        ("ListRooms", '{"names": 5}', token(room_list=True), "application/json", 400, "malformed"),
        (
            "ListRooms",
            b"\xff\xff\xff",
            token(room_list=True),
            "application/protobuf",
            400,
            "malformed",
        ),
        (
            "CreateRoom",
            '{"name": "has space"}',
            token(room_create=True),
            "application/json",
            400,
            "invalid_argument",
        ),
        (
            "CreateRoom",
            '{"name": "big", "metadata": "%s"}' % ("m" * 70000),
            token(room_create=True),
            "application/json",
            400,
            "invalid_argument",
        ),
        ("NoSuchMethod", "{}", token(room_list=True), "application/json", 404, "bad_route"),
        ("ListRooms", "{}", token(room_list=True), "text/plain", 404, "bad_route"),
    ]
    for method, body, bearer, content_type, status, code in cases:
        got_status, got = await call_json(
            keyed_server, method, body, bearer=bearer, content_type=content_type
        )
        assert (got_status, got.get("code")) == (status, code), (method, body, got)
        assert isinstance(got.get("msg"), str)
        assert got["msg"]
    health = keyed_server.health()
    assert health["status"] == "ok", "bad calls must not hurt the server"


async def test_open_server_refuses_room_service(sfu_server: ServerProcess) -> None:
    status, body = await call_json(sfu_server, "ListRooms", "{}", bearer=token(room_list=True))
    assert status == 401
    assert body["code"] == "unauthenticated"
    assert "API key" in body["msg"]


async def test_livekit_api_gets_twirp_errors(lkapi: LiveKitAPI) -> None:
    with pytest.raises(TwirpError) as error:
        await lkapi.room.list_participants(proto.ListParticipantsRequest(room="nowhere"))
    assert (error.value.status, error.value.code) == (404, "not_found")
    with pytest.raises(TwirpError) as error:
        await lkapi.room.send_data(proto.SendDataRequest(room="nowhere", data=b"x"))
    assert error.value.code == "not_found"


# ---- every method, with bots in the room ------------------------------------------


async def _check_mute(
    rooms: RoomService, room_name: str, alice: SfuClient, bob: SfuClient, audio_id: str
) -> None:
    # MutePublishedTrack: the others get consumerPaused, alice is told and
    # cannot resume it herself; unmuting resumes it.
    bob_paused = await collect(bob, "consumerpaused")
    bob_resumed = await collect(bob, "consumerresumed")
    alice_notes = await collect(alice, "notification")
    bob_audio = next(c.id for c in bob.consumers.values() if c.kind == "audio")
    muted = await rooms.mute_published_track(
        proto.MuteRoomTrackRequest(room=room_name, identity="alice", track_sid=audio_id, muted=True)
    )
    assert muted.track.sid == audio_id
    assert muted.track.muted
    assert await wait_until(lambda: bob_audio in bob_paused, timeout=5)
    assert await wait_until(
        lambda: ("producerMutedByAdmin", {"producerId": audio_id, "muted": True}) in alice_notes,
        timeout=5,
    )
    with pytest.raises(ProtooError) as refused:
        await alice.resume_producer(audio_id)
    assert refused.value.code == 403
    await rooms.mute_published_track(
        proto.MuteRoomTrackRequest(
            room=room_name, identity="alice", track_sid=audio_id, muted=False
        )
    )
    assert await wait_until(lambda: bob_audio in bob_resumed, timeout=5)
    with pytest.raises(TwirpError) as error:
        await rooms.mute_published_track(
            proto.MuteRoomTrackRequest(
                room=room_name, identity="alice", track_sid="TR_x", muted=True
            )
        )
    assert error.value.code == "not_found"


async def _check_update_participant(
    rooms: RoomService,
    room_name: str,
    clients: tuple[SfuClient, SfuClient, SfuClient],
    produced: tuple[str, str],
) -> None:
    alice, bob, carol = clients
    audio_id, video_id = produced
    # UpdateParticipant: name and metadata; the others see the new name.
    bob_notes = await collect(bob, "notification")
    updated = await rooms.update_participant(
        proto.UpdateParticipantRequest(
            room=room_name, identity="alice", name="Alice L.", metadata='{"role": "host"}'
        )
    )
    assert (updated.name, updated.metadata) == ("Alice L.", '{"role": "host"}')
    assert await wait_until(
        lambda: any(
            method == "peerDisplayNameChanged" and data["displayName"] == "Alice L."
            for method, data in bob_notes
        ),
        timeout=5,
    )

    # canSubscribe false: carol's consumers and data consumers close at once, bob's stay.
    carol_closed = await collect(carol, "consumerclosed")
    carol_data_closed = await collect(carol, "dataconsumerclosed")
    carol_consumers = set(carol.consumers)
    assert await wait_until(lambda: len(carol.data_consumers) == 1, timeout=10)
    carol_data_consumers = set(carol.data_consumers)
    updated = await rooms.update_participant(
        proto.UpdateParticipantRequest(
            room=room_name,
            identity="carol",
            permission=models.ParticipantPermission(
                can_publish=True, can_subscribe=False, can_publish_data=True
            ),
        )
    )
    assert not updated.permission.can_subscribe
    assert await wait_until(lambda: set(carol_closed) >= carol_consumers, timeout=5)
    assert not carol.consumers
    assert len(bob.consumers) == 2
    assert await wait_until(lambda: set(carol_data_closed) == carol_data_consumers, timeout=5)
    assert len(bob.data_consumers) == 1
    # Given back, it takes effect at once too: carol consumes alice's tracks again.
    await rooms.update_participant(
        proto.UpdateParticipantRequest(
            room=room_name,
            identity="carol",
            permission=models.ParticipantPermission(can_publish=True, can_subscribe=True),
        )
    )
    assert await carol.wait_for_consumers(2, timeout=10)

    # canPublish false: alice's producers close (she is told), bob's consumers of them too.
    alice_closed = await collect(alice, "producerclosed")
    bob_closed = await collect(bob, "consumerclosed")
    bob_consumers = set(bob.consumers)
    await rooms.update_participant(
        proto.UpdateParticipantRequest(
            room=room_name,
            identity="alice",
            permission=models.ParticipantPermission(can_publish=False, can_subscribe=True),
        )
    )
    assert await wait_until(lambda: {a[0] for a in alice_closed} == {audio_id, video_id}, timeout=5)
    assert await wait_until(lambda: set(bob_closed) >= bob_consumers, timeout=5)
    with pytest.raises(ProtooError) as refused:
        await alice.produce(ToneAudioTrack(frequency=300))
    assert refused.value.code == 403
    info = await rooms.get_participant(
        proto.RoomParticipantIdentity(room=room_name, identity="alice")
    )
    assert list(info.tracks) == []
    assert not info.permission.can_publish


async def test_room_service_methods_and_their_effects_on_peers(
    keyed_server: ServerProcess, lkapi: LiveKitAPI
) -> None:
    room_name = "rs-effects"
    rooms = lkapi.room
    alice, bob, carol = (bot(keyed_server, room_name, name) for name in ("alice", "bob", "carol"))
    try:
        for client in (alice, bob, carol):
            await client.join()
        audio_id = await alice.produce(ToneAudioTrack(frequency=440))
        video_id = await alice.produce(PatternVideoTrack(320, 240, fps=15))
        await alice.produce_data("chat")
        for client in (bob, carol):
            assert await client.wait_for_consumers(2, timeout=15)

        # ListRooms, with and without the names filter.
        listed = await rooms.list_rooms(proto.ListRoomsRequest(names=[room_name]))
        assert [r.name for r in listed.rooms] == [room_name]
        assert listed.rooms[0].num_participants == 3
        assert listed.rooms[0].sid.startswith("RM_")
        assert room_name in {
            r.name for r in (await rooms.list_rooms(proto.ListRoomsRequest())).rooms
        }
        none = await rooms.list_rooms(proto.ListRoomsRequest(names=["no-such-room"]))
        assert list(none.rooms) == []

        # ListParticipants and GetParticipant.
        participants = await rooms.list_participants(proto.ListParticipantsRequest(room=room_name))
        assert {p.identity for p in participants.participants} == {"alice", "bob", "carol"}
        info = await rooms.get_participant(
            proto.RoomParticipantIdentity(room=room_name, identity="alice")
        )
        assert info.state == models.ParticipantInfo.State.ACTIVE
        tracks = {t.sid: t for t in info.tracks}
        assert set(tracks) == {audio_id, video_id}
        assert tracks[audio_id].type == models.TrackType.AUDIO
        assert tracks[video_id].type == models.TrackType.VIDEO
        with pytest.raises(TwirpError) as error:
            await rooms.get_participant(
                proto.RoomParticipantIdentity(room=room_name, identity="zed")
            )
        assert error.value.code == "not_found"

        await _check_mute(rooms, room_name, alice, bob, audio_id)
        await _check_update_participant(rooms, room_name, (alice, bob, carol), (audio_id, video_id))

        # UpdateRoomMetadata.
        room = await rooms.update_room_metadata(
            proto.UpdateRoomMetadataRequest(room=room_name, metadata="agenda")
        )
        assert room.metadata == "agenda"
        listed = await rooms.list_rooms(proto.ListRoomsRequest(names=[room_name]))
        assert listed.rooms[0].metadata == "agenda"

        # RemoveParticipant: bob is closed for good (4003, no reconnection),
        # the others get peerClosed.
        alice_peers_closed = await collect(alice, "peerclosed")
        bob_fatal = await collect(bob, "fatal")
        bob_reconnecting = await collect(bob, "reconnecting")
        await rooms.remove_participant(
            proto.RoomParticipantIdentity(room=room_name, identity="bob")
        )
        assert await wait_until(lambda: "bob" in alice_peers_closed, timeout=5)
        assert await wait_until(lambda: bool(bob_fatal), timeout=5)
        assert "removed" in bob_fatal[0]
        assert await wait_until(lambda: bob.closed, timeout=5)
        assert bob_reconnecting == []
        participants = await rooms.list_participants(proto.ListParticipantsRequest(room=room_name))
        assert {p.identity for p in participants.participants} == {"alice", "carol"}

        # DeleteRoom: everyone is closed, and the room is gone.
        fatal = {
            name: await collect(c, "fatal") for name, c in (("alice", alice), ("carol", carol))
        }
        await rooms.delete_room(proto.DeleteRoomRequest(room=room_name))
        for name, seen in fatal.items():
            assert await wait_until(lambda seen=seen: bool(seen), timeout=5), name
        listed = await rooms.list_rooms(proto.ListRoomsRequest(names=[room_name]))
        assert list(listed.rooms) == []
        with pytest.raises(TwirpError) as error:
            await rooms.delete_room(proto.DeleteRoomRequest(room=room_name))
        assert error.value.code == "not_found"
    finally:
        await asyncio.gather(*(c.close() for c in (alice, bob, carol)), return_exceptions=True)

    async with (
        aiohttp.ClientSession() as session,
        session.get(keyed_server.http_url + "/metrics") as response,
    ):
        metrics = await response.text()
    assert 'sfu_roomservice_calls_total{code="ok",method="RemoveParticipant"} 1.0' in metrics
    log = keyed_server.log()
    assert "Traceback" not in log, log[-3000:]
    assert " ERROR " not in log, log[-3000:]


async def test_json_bodies_lower_camel_in_snake_case_out(keyed_server: ServerProcess) -> None:
    status, room = await call_json(
        keyed_server,
        "CreateRoom",
        '{"name": "rs-json", "emptyTimeout": 30, "max_participants": 4, "metadata": "m"}',
        bearer=token(room_create=True),
    )
    assert status == 200, room
    assert (room["name"], room["empty_timeout"], room["max_participants"]) == ("rs-json", 30, 4)
    assert room["num_participants"] == 0
    assert room["sid"].startswith("RM_")
    status, listed = await call_json(
        keyed_server, "ListRooms", '{"names": ["rs-json"]}', bearer=token(room_list=True)
    )
    assert status == 200
    assert [r["name"] for r in listed["rooms"]] == ["rs-json"]
    status, body = await call_json(
        keyed_server, "DeleteRoom", '{"room": "rs-json"}', bearer=token(room_create=True)
    )
    assert (status, body) == (200, {})


# ---- the room lifecycle -------------------------------------------------------------


async def test_lifecycle_without_auto_create(managed_server: ServerProcess) -> None:
    health = managed_server.health()
    assert health["roomDefaults"]["autoCreate"] is False
    assert health["roomDefaults"]["emptyTimeout"] == 2

    # No room, no join: 404 before the upgrade.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                managed_server.ws_url
                + f"/?roomId=missing&peerId=p&access_token={token('p', room='missing', room_join=True)}",
                protocols=("protoo",),
            )
    assert refused.value.status == 404

    api = LiveKitAPI(managed_server.http_url, KEY, SECRET)
    try:
        created = await api.room.create_room(
            proto.CreateRoomRequest(name="managed", max_participants=1, metadata="m")
        )
        assert (created.max_participants, created.empty_timeout) == (1, 2)
        first, second = (
            bot(managed_server, "managed", "first"),
            bot(managed_server, "managed", "second"),
        )
        try:
            await first.join()
            with pytest.raises(ProtooError) as full:
                await second.join()
            assert full.value.code == 429
        finally:
            await second.close()
            await first.close()

        # Empty again: still there, then closed after its empty timeout.
        listed = await api.room.list_rooms(proto.ListRoomsRequest(names=["managed"]))
        assert [r.name for r in listed.rooms] == ["managed"]

        async def gone() -> bool:
            found = await api.room.list_rooms(proto.ListRoomsRequest(names=["managed"]))
            return not found.rooms

        deadline = asyncio.get_running_loop().time() + 10
        while not await gone():
            assert asyncio.get_running_loop().time() < deadline, "the empty room never closed"
            await asyncio.sleep(0.2)

        # A created room nobody joins closes after its own empty_timeout.
        await api.room.create_room(proto.CreateRoomRequest(name="never-joined", empty_timeout=1))
        assert await wait_until(lambda: managed_server.health()["rooms"] == 0, timeout=10)
    finally:
        await api.aclose()


async def test_send_data_reaches_every_peer(lkapi: LiveKitAPI, keyed_server: ServerProcess) -> None:
    """SendData: the server's own data producer posts to every peer of the room
    (peerId null), on the topic as label; a targeted send is refused, not widened."""
    room_name = "senddata"
    alice, bob = bot(keyed_server, room_name, "alice"), bot(keyed_server, room_name, "bob")
    got: dict[str, list[DataMessage]] = {"alice": [], "bob": []}
    alice.on("data", got["alice"].append)
    bob.on("data", got["bob"].append)
    try:
        await alice.join()
        await bob.join()
        await lkapi.room.send_data(
            proto.SendDataRequest(room=room_name, data=b"the meeting ends in 5 minutes")
        )
        await lkapi.room.send_data(
            proto.SendDataRequest(room=room_name, data=b'{"hand": "up"}', topic="reactions")
        )
        assert await wait_until(lambda: all(len(m) == 2 for m in got.values()), timeout=15), got
        for messages in got.values():
            assert [(m.label, m.data, m.peer_id) for m in messages] == [
                ("chat", b"the meeting ends in 5 minutes", None),
                ("reactions", b'{"hand": "up"}', None),
            ]
        with pytest.raises(TwirpError) as error:
            await lkapi.room.send_data(
                proto.SendDataRequest(room=room_name, data=b"x", destination_identities=["bob"])
            )
        assert (error.value.status, error.value.code) == (400, "invalid_argument")
        with pytest.raises(TwirpError) as error:
            await lkapi.room.send_data(proto.SendDataRequest(room=room_name, data=bytes(300_000)))
        # Over the data channel's message size: refused, nothing sent.
        assert (error.value.status, error.value.code) == (400, "invalid_argument"), error.value
        assert all(len(m) == 2 for m in got.values())
    finally:
        await asyncio.gather(alice.close(), bob.close())
