"""The browser client removed by RoomService (livekit-api's RemoveParticipant):
the page says so and does not reconnect (WebSocket close 4003 is final)."""

from __future__ import annotations

import pytest
from livekit.api import LiveKitAPI
from livekit.protocol import room as proto
from playwright.async_api import Browser

from ..conftest import ServerProcess
from ..e2e.helpers import wait_until
from ..e2e.test_auth import KEY, SECRET, auth_server, token
from .test_auth_browser import error_text, open_link
from .test_browser import CHROMIUM, browser

__all__ = ["auth_server", "browser"]  # fixtures, used by name

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (make test installs it)"
)


async def test_a_removed_page_says_so_and_does_not_reconnect(
    browser: Browser, auth_server: ServerProcess
) -> None:
    room = "browser-removed"
    page, sockets = await open_link(browser, auth_server, room, token("troll", room))
    await page.wait_for_selector("#connection-state[data-state='connected']", timeout=20_000)
    opened = len(sockets)
    async with LiveKitAPI(auth_server.http_url, KEY, SECRET) as api:
        await api.room.remove_participant(
            proto.RoomParticipantIdentity(room=room, identity="troll")
        )
    assert "You were removed from this room" in await error_text(page)
    # Well past the client's first reconnection backoff: still no new socket.
    await page.wait_for_timeout(3000)
    assert len(sockets) == opened, [s.url for s in sockets]
    assert await wait_until(lambda: auth_server.health()["peers"] == 0, timeout=5)
