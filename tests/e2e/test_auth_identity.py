"""A token's ``name`` and ``metadata`` on the server's Peer: the name is the
displayName the others see (LiveKit's participant name) and the peer cannot
change it; metadata is kept for RoomService. The server runs in this process
so the test can read its Peer objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from livekit.api import AccessToken, VideoGrants

from sfu.client import ProtooError, SfuClient
from sfu.rooms.peer import Peer
from sfu.server import SfuServer

from ..conftest import LOOPBACK
from .helpers import in_process_server, wait_until

KEY = "APIident"
SECRET = "identity-secret-" + "i" * 40
ROOM = "identity-room"


@dataclass
class TokenedServer:
    server: SfuServer
    ws_url: str

    def peer(self, peer_id: str) -> Peer:
        return self.server.rooms[ROOM].peers[peer_id]


@pytest.fixture
async def tokened_server() -> AsyncIterator[TokenedServer]:
    async with in_process_server(47400, auth={"keys": {KEY: SECRET}}) as (server, ws_url):
        yield TokenedServer(server, ws_url)


def bot(srv: TokenedServer, identity: str, *, name: str = "", metadata: str = "") -> SfuClient:
    token = AccessToken(KEY, SECRET).with_identity(identity)
    if name:
        token = token.with_name(name)
    if metadata:
        token = token.with_metadata(metadata)
    token = token.with_grants(VideoGrants(room=ROOM, room_join=True))
    return SfuClient(
        srv.ws_url,
        ROOM,
        identity,
        display_name=f"{identity} asks",
        ice_addresses=LOOPBACK,
        access_token=token.to_jwt(),
    )


async def test_the_tokens_name_is_the_display_name_and_metadata_is_kept(
    tokened_server: TokenedServer,
) -> None:
    named = bot(tokened_server, "ada", name="Ada Lovelace", metadata='{"role": "host"}')
    plain = bot(tokened_server, "bob")
    try:
        await named.join()
        await plain.join()
        ada, bob = tokened_server.peer("ada"), tokened_server.peer("bob")
        assert (ada.name, ada.display_name, ada.metadata) == (
            "Ada Lovelace",
            "Ada Lovelace",
            '{"role": "host"}',
        )
        # No name in the token: the displayName the client asked for, as in open mode.
        assert (bob.name, bob.display_name, bob.metadata) == ("", "bob asks", "")
        assert plain.peers["ada"]["displayName"] == "Ada Lovelace"
        assert named.peers["bob"]["displayName"] == "bob asks"

        with pytest.raises(ProtooError) as refused:
            await named.request("changeDisplayName", {"displayName": "Countess"})
        assert refused.value.code == 403
        assert "access token" in refused.value.reason
        assert ada.display_name == "Ada Lovelace"
        # A peer without a token name still may change its own.
        await plain.request("changeDisplayName", {"displayName": "Bob B."})
        assert await wait_until(lambda: named.peers["bob"]["displayName"] == "Bob B.", timeout=5)
    finally:
        await named.close()
        await plain.close()
