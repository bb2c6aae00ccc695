"""The server speaks on data channels itself (Room.send_data, mediasoup's
DirectTransport): a system message reaches every peer, one joining later
gets the server's data producer too. The server runs in this test's process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sfu.client import SfuClient
from sfu.config import config_from_dict
from sfu.server import SfuServer

from ..conftest import LOOPBACK, free_tcp_port
from .helpers import wait_until
from .test_data_channels import Inbox


@pytest.fixture
async def server() -> AsyncIterator[tuple[SfuServer, str]]:
    port = free_tcp_port()
    config = config_from_dict(
        {
            "http": {"listen_ip": "127.0.0.1", "port": port},
            "media": {"listen_ip": "127.0.0.1", "rtc_min_port": 47400, "rtc_max_port": 47499},
            "workers": {"count": 1},
        }
    )
    sfu = SfuServer(config)
    await sfu.start()
    runner = web.AppRunner(sfu.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield sfu, f"ws://127.0.0.1:{port}"
    finally:
        await sfu.close()
        await runner.cleanup()


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
