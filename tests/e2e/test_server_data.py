"""The server speaks on data channels itself (Room.send_data, mediasoup's
DirectTransport): a system message reaches every peer, one joining later
gets the server's data producer too. The server runs in this test's process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sfu.client import SfuClient
from sfu.server import SfuServer

from ..conftest import LOOPBACK
from .helpers import in_process_server, wait_until
from .test_data_channels import Inbox


@pytest.fixture
async def server() -> AsyncIterator[tuple[SfuServer, str]]:
    async with in_process_server(47400, workers={"count": 1}) as running:
        yield running


async def test_a_room_posts_a_system_message_to_every_peer(
    server: tuple[SfuServer, str],
) -> None:
    sfu, url = server
    alice = SfuClient(url, "system", "alice", ice_addresses=LOOPBACK)
    bob = SfuClient(url, "system", "bob", ice_addresses=LOOPBACK)
    await alice.join()
    await bob.join()
    inboxes = [Inbox(alice), Inbox(bob)]
    late: SfuClient | None = None
    try:
        room = sfu.rooms["system"]
        await room.send_data("the room closes in 5 minutes")
        await room.send_data(b"\x00\x01binary", label="chat")
        for inbox in inboxes:
            received = await inbox.wait_for(2)
            assert [m.data for m in received] == ["the room closes in 5 minutes", b"\x00\x01binary"]
            assert {m.peer_id for m in received} == {None}
        late = SfuClient(url, "system", "carol", ice_addresses=LOOPBACK)
        late_inbox = Inbox(late)
        await late.join()
        assert await wait_until(lambda: bool(late.data_consumers), 20)
        await room.send_data("welcome carol")
        received = await late_inbox.wait_for(1)
        assert received[0].data == "welcome carol"
    finally:
        await asyncio.gather(*(c.close() for c in (alice, bob, late) if c is not None))


async def test_a_room_hears_its_peers_data(server: tuple[SfuServer, str]) -> None:
    sfu, url = server
    alice = SfuClient(url, "listening", "alice", ice_addresses=LOOPBACK)
    bob = SfuClient(url, "listening", "bob", ice_addresses=LOOPBACK)
    await alice.join()
    await bob.join()
    heard: list[tuple[str, str, str | bytes]] = []
    changed = asyncio.Event()

    def listener(peer_id: str, label: str, message: str | bytes) -> None:
        heard.append((peer_id, label, message))
        changed.set()

    async def hear(count: int) -> None:
        async with asyncio.timeout(20):
            while len(heard) < count:
                changed.clear()
                await changed.wait()

    try:
        await alice.send_data("before listening")  # alice's data producer exists first
        room = sfu.rooms["listening"]
        stop = await room.listen_data(listener)
        await alice.send_data("while listening")
        await hear(1)
        await bob.send_data(b"\x01bytes", label="game")
        await hear(len(heard) + 1)
        assert heard == [("alice", "chat", "while listening"), ("bob", "game", b"\x01bytes")]
        stop()
        assert room.data._readers == {}
    finally:
        await asyncio.gather(alice.close(), bob.close())
