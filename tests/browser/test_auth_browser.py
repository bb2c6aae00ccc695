"""The browser client on a server with access control: the token from the page
URL, person-readable refusals without retries, and a token that may not
publish (docs/auth.md, "The browser client")."""

from __future__ import annotations

import datetime
import urllib.parse
from pathlib import Path
from typing import cast

import pytest
from playwright.async_api import Browser, Page, WebSocket

from ..conftest import ServerProcess, start_server, stop_server
from ..e2e.helpers import join as join_bot
from ..e2e.test_auth import KEY, auth_server, token
from .test_browser import CHROMIUM, assert_rising, browser, wait_tile_video
from .test_reconnect import SeveringProxy, ViaProxy

__all__ = ["auth_server", "browser"]  # fixtures, used by name

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (make test installs it)"
)


async def open_link(
    browser: Browser, server: ServerProcess, room: str, access_token: str
) -> tuple[Page, list[WebSocket]]:
    """A room link as a person gets it: only the room and the token (no peerId:
    the token's sub is the peer). Returns the page and its WebSockets."""
    context = await browser.new_context(viewport={"width": 1000, "height": 700})
    await context.grant_permissions(["camera", "microphone"])
    page = await context.new_page()
    sockets: list[WebSocket] = []

    def opened(socket: WebSocket) -> None:  # Playwright needs a Python function here
        sockets.append(socket)

    page.on("websocket", opened)
    query = urllib.parse.urlencode(
        {"roomId": room, "access_token": access_token, "handler": "Chrome111", "autojoin": "1"}
    )
    await page.goto(f"{server.http_url}/?{query}")
    return page, sockets


async def error_text(page: Page) -> str:
    await page.wait_for_selector("#error .error-message", timeout=20_000)
    return await page.inner_text("#error .error-message")


async def test_an_expired_link_says_so_and_does_not_retry(
    browser: Browser, auth_server: ServerProcess
) -> None:
    expired = token("late", "browser-expired", ttl=datetime.timedelta(minutes=-5))
    page, sockets = await open_link(browser, auth_server, "browser-expired", expired)
    assert "This link has expired" in await error_text(page)
    # The refusal was learnt from /admission, once: one WebSocket, no loop. The
    # page offers no "Try again" (it would be refused again).
    assert len(sockets) == 1, [s.url for s in sockets]
    assert await page.locator("#error .error-actions button:not(.dismiss)").count() == 0
    # Still one socket a while later (the client's backoff would have retried by now).
    await page.wait_for_timeout(3000)
    assert len(sockets) == 1, [s.url for s in sockets]
    assert "access_token=" in sockets[0].url


async def test_a_link_for_another_room_is_refused_with_a_readable_message(
    browser: Browser, auth_server: ServerProcess
) -> None:
    page, sockets = await open_link(
        browser, auth_server, "browser-here", token("roamer", "browser-elsewhere")
    )
    assert "This link is for another room" in await error_text(page)
    assert len(sockets) == 1


async def test_a_valid_link_joins_under_the_tokens_name_and_media_flows(
    browser: Browser, auth_server: ServerProcess
) -> None:
    room = "browser-valid"
    page, _ = await open_link(browser, auth_server, room, token("ada", room, name="Ada L."))
    await page.wait_for_selector("#connection-state[data-state='connected']", timeout=20_000)
    bot = await join_bot(auth_server, room, "bot", 440, access_token=token("bot", room))
    try:
        assert await bot.client.wait_for_consumers(2, timeout=20)
        # The token's sub is the peerId, its name the displayName others see.
        assert bot.client.peers["ada"]["displayName"] == "Ada L."
        video = bot.sink_for("ada", "video")
        assert await video.wait_frames(20, timeout=20), f"bot decoded {video.frames} frames"
        await wait_tile_video(page, "bot")
        await assert_rising(page, "bot", "video", "framesDecoded")
        await assert_rising(page, "bot", "audio", "totalSamplesReceived")
    finally:
        await bot.client.close()


async def test_a_link_without_publishing_says_so_and_still_receives(
    browser: Browser, auth_server: ServerProcess
) -> None:
    room = "browser-listener"
    bot = await join_bot(auth_server, room, "speaker", 440, access_token=token("speaker", room))
    try:
        page, _ = await open_link(
            browser, auth_server, room, token("listener", room, can_publish=False)
        )
        assert "You may not publish here" in await error_text(page)
        await page.wait_for_selector("#connection-state[data-state='connected']", timeout=20_000)
        await wait_tile_video(page, "speaker")
        await assert_rising(page, "speaker", "video", "framesDecoded")
        assert auth_server.health()["producers"] == 2  # only the bot's
        assert "listener" in bot.client.peers
    finally:
        await bot.client.close()


async def test_a_reconnection_refused_by_the_server_says_why_and_stops(
    browser: Browser, auth_server: ServerProcess, tmp_path: Path
) -> None:
    """alice joins through a proxy; the proxy is cut and then leads to a server
    that holds another secret for the same key (as after a key rotation), so her
    reconnection is refused with 401: the page says so and stops trying."""
    room = "browser-rotated"
    proxy = SeveringProxy(auth_server.http_port)
    await proxy.start()
    rotated = start_server(
        tmp_path, env={"SFU_API_KEY": KEY, "SFU_API_SECRET": "rotated-secret-" + "r" * 40}
    )
    try:
        page, sockets = await open_link(
            browser, cast(ServerProcess, ViaProxy(proxy.http_url)), room, token("alice", room)
        )
        await page.wait_for_selector("#connection-state[data-state='connected']", timeout=20_000)
        proxy.upstream_port = rotated.http_port
        assert proxy.sever() >= 1
        assert "This link is not valid" in await error_text(page)
        await page.wait_for_selector("#connection-state[data-state='disconnected']", timeout=10_000)
        attempts = proxy.websocket_attempts
        assert attempts == 2, attempts  # the join's, then one refused reconnection
        await page.wait_for_timeout(3000)  # longer than the resume loop's first backoffs
        assert proxy.websocket_attempts == attempts, "the page kept retrying"
        assert len(sockets) == attempts
    finally:
        await proxy.close()
        stop_server(rotated)
