"""LiveKit webhooks end to end: a real server with real bots POSTs its events
to an aiohttp receiver on 127.0.0.1, which checks every one with livekit-api's
WebhookReceiver (the SDK LiveKit users run)."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from livekit.api import AccessToken, TokenVerifier, VideoGrants, WebhookReceiver
from livekit.protocol.webhook import WebhookEvent

from sfu.client import SfuClient, ToneAudioTrack

from ..conftest import LOOPBACK, ServerProcess, free_tcp_port, start_server, stop_server

KEY = "APIhooks"
SECRET = "hooks-secret-" + "z" * 40
ROOM = "hook-room"


class Receiver:
    """An HTTP endpoint that validates each webhook; ``fail_first`` answers 500 that many times."""

    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        self.receiver = WebhookReceiver(TokenVerifier(KEY, SECRET))
        self.events: list[WebhookEvent] = []
        self.fail_left = fail_first
        self.attempts = 0
        self.hang = hang
        self.hanging = asyncio.Event()
        self.changed = asyncio.Event()
        self.port = free_tcp_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        assert request.content_type == "application/webhook+json"
        body = (await request.read()).decode()
        # Raises (and fails the request) on a bad signature or body hash.
        event = self.receiver.receive(body, request.headers["Authorization"])
        if self.hang:
            self.hanging.set()
            await asyncio.Event().wait()
        if self.fail_left > 0:
            self.fail_left -= 1
            return web.Response(status=500)
        self.events.append(event)
        self.changed.set()
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def wait_for(self, event: str, count: int = 1, timeout: float = 30) -> None:
        async def until() -> None:
            while sum(e.event == event for e in self.events) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


def token(identity: str, hidden: bool = False) -> str:
    return (
        AccessToken(KEY, SECRET)
        .with_identity(identity)
        .with_ttl(datetime.timedelta(hours=1))
        .with_grants(VideoGrants(room_join=True, room=ROOM, hidden=hidden))
        .to_jwt()
    )


def client(server: ServerProcess, identity: str, hidden: bool = False) -> SfuClient:
    return SfuClient(
        server.ws_url,
        ROOM,
        identity,
        ice_addresses=LOOPBACK,
        access_token=token(identity, hidden),
    )


def hook_server(tmp_path: Path, url: str) -> ServerProcess:
    return start_server(
        tmp_path,
        {"webhooks": {"urls": [url], "api_key": KEY, "request_timeout": 30}},
        env={"SFU_API_KEY": KEY, "SFU_API_SECRET": SECRET},
    )


@pytest.fixture
def stopper() -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for server in servers:
        stop_server(server)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


EXPECTED = [
    ("room_started", ""),
    ("participant_joined", "alice"),
    ("participant_joined", "bob"),
    ("track_published", "alice"),
    ("track_unpublished", "alice"),
    ("participant_left", "alice"),
    ("participant_left", "bob"),
    ("room_finished", ""),
]


async def room_life(server: ServerProcess, receiver: Receiver) -> str:
    """Two bots join, alice publishes then unpublishes audio, both leave. The producer id."""
    alice, bob = client(server, "alice"), client(server, "bob")
    try:
        await alice.join()
        await bob.join()
        producer_id = await alice.produce(ToneAudioTrack(frequency=440))
        await alice.close_producer(producer_id)
        await alice.close()
        # Leaving one after the other keeps participant_left's order fixed.
        await receiver.wait_for("participant_left")
    finally:
        await alice.close()
        await bob.close()
    return producer_id


async def test_one_room_life_in_order(
    tmp_path: Path, receiver: Receiver, stopper: list[ServerProcess]
) -> None:
    server = hook_server(tmp_path, receiver.url)
    stopper.append(server)
    producer_id = await room_life(server, receiver)
    await receiver.wait_for("room_finished")
    events = receiver.events
    assert [(e.event, e.participant.identity) for e in events] == EXPECTED
    assert len({e.id for e in events}) == len(events)
    assert all(e.id.startswith("EV_") and e.created_at > time.time() - 120 for e in events)
    assert {e.room.name for e in events} == {ROOM}
    assert len({e.room.sid for e in events}) == 1
    published, unpublished = events[3], events[4]
    assert published.track.sid == unpublished.track.sid == producer_id
    assert published.track.type == 0  # AUDIO
    # The info is the event's moment: two participants when bob joined, none at the end.
    assert events[2].room.num_participants == 2
    assert events[-1].room.num_participants == 0
    health = server.health()["webhooks"]
    assert health["urls"] == [receiver.url]
    assert health["apiKey"] == KEY
    assert SECRET not in str(health)


async def test_failing_receiver_gets_each_event_once_in_order(
    tmp_path: Path, stopper: list[ServerProcess]
) -> None:
    receiver = Receiver(fail_first=2)
    await receiver.start()
    try:
        server = hook_server(tmp_path, receiver.url)
        stopper.append(server)
        await room_life(server, receiver)
        await receiver.wait_for("room_finished")
        assert [(e.event, e.participant.identity) for e in receiver.events] == EXPECTED
        assert receiver.attempts == len(EXPECTED) + 2
        metrics = await asyncio.to_thread(_metrics, server)
        assert 'sfu_webhook_events_total{event="room_started",outcome="delivered"} 1.0' in metrics
        assert (
            'sfu_webhook_events_total{event="track_published",outcome="delivered"} 1.0' in metrics
        )
    finally:
        await receiver.stop()


def _metrics(server: ServerProcess) -> str:
    import urllib.request

    with urllib.request.urlopen(server.http_url + "/metrics", timeout=10) as response:
        return str(response.read().decode())


async def test_hanging_receiver_never_slows_joins_or_media(
    tmp_path: Path, stopper: list[ServerProcess]
) -> None:
    receiver = Receiver(hang=True)
    await receiver.start()
    try:
        server = hook_server(tmp_path, receiver.url)
        stopper.append(server)
        alice, bob = client(server, "alice"), client(server, "bob")
        try:
            await alice.join()
            # room_started is hanging in the receiver from here on.
            await asyncio.wait_for(receiver.hanging.wait(), 30)
            consumed = asyncio.Event()
            bob.on("newconsumer", lambda remote: consumed.set())
            await asyncio.wait_for(bob.join(), 30)
            await alice.produce(ToneAudioTrack(frequency=440))
            await asyncio.wait_for(consumed.wait(), 30)
            # Every join and the media path went through while the first hook still hangs.
            assert receiver.events == []
            assert receiver.attempts == 1
        finally:
            await alice.close()
            await bob.close()
    finally:
        await receiver.stop()


async def test_dead_receiver_port(tmp_path: Path, stopper: list[ServerProcess]) -> None:
    """Nothing listening: the server goes on and /health shows the events pending or failed."""
    server = hook_server(tmp_path, f"http://127.0.0.1:{free_tcp_port()}/hook")
    stopper.append(server)
    alice = client(server, "alice")
    try:
        await asyncio.wait_for(alice.join(), 30)
        await alice.produce(ToneAudioTrack(frequency=440))
    finally:
        await alice.close()
    assert server.health()["status"] == "ok"


async def test_hidden_participant_is_not_announced(
    tmp_path: Path, receiver: Receiver, stopper: list[ServerProcess]
) -> None:
    server = hook_server(tmp_path, receiver.url)
    stopper.append(server)
    alice, recorder = client(server, "alice"), client(server, "recorder", hidden=True)
    try:
        await alice.join()
        await recorder.join()
        await recorder.close()
        await alice.close()
    finally:
        await alice.close()
        await recorder.close()
    await receiver.wait_for("room_finished")
    assert [(e.event, e.participant.identity) for e in receiver.events] == [
        ("room_started", ""),
        ("participant_joined", "alice"),
        ("participant_left", "alice"),
        ("room_finished", ""),
    ]
