"""The chat panel (data channels) in real headless Chromium: Chromium with
Chromium in a video room and in a voice channel, with an unread badge while
the panel is closed and join/leave lines."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from sfu.client.data import DataMessage

from ..conftest import ServerProcess
from ..e2e.helpers import join as join_bot
from .test_browser import CHROMIUM, browser, open_peer, screenshot_path

__all__ = ["browser"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (make test installs it)"
)


async def wait_chat_ready(page: Page) -> None:
    """The chat's data channel is open: the input is enabled."""
    try:
        await page.wait_for_selector(
            "#chat-input:not([disabled])", state="attached", timeout=20_000
        )
    except PlaywrightTimeoutError:
        status = await page.text_content("#chat-status")
        raise AssertionError(f"the chat did not open; it says: {status!r}") from None


async def send(page: Page, text: str) -> None:
    if await page.locator("#chat-panel").is_hidden():
        await page.click("#toggle-chat")
    await page.fill("#chat-input", text)
    await page.press("#chat-input", "Enter")


async def messages(page: Page) -> list[dict[str, str]]:
    result: list[dict[str, str]] = await page.eval_on_selector_all(
        "#chat-messages li[data-kind='message']",
        """(lines) => lines.map((li) => ({
            name: li.querySelector('.chat-name').textContent,
            time: li.querySelector('time').textContent,
            text: li.querySelector('.chat-text').textContent,
        }))""",
    )
    return result


async def wait_messages(page: Page, count: int) -> list[dict[str, str]]:
    await page.wait_for_function(
        "(n) => document.querySelectorAll(\"#chat-messages li[data-kind='message']\").length >= n",
        arg=count,
        timeout=20_000,
    )
    return await messages(page)


@pytest.mark.parametrize("mode", ["video", "voice"])
async def test_two_browsers_chat(browser: Browser, sfu_server: ServerProcess, mode: str) -> None:
    room = f"chat-{mode}"
    alice = await open_peer(browser, sfu_server, room, "alice", mode=mode)
    bob = await open_peer(browser, sfu_server, room, "bob", mode=mode)
    await wait_chat_ready(alice)
    await wait_chat_ready(bob)

    # Bob's panel is closed: Alice's messages raise his unread badge, in order.
    for n in range(3):
        await send(alice, f"hello {n} from alice")
    await bob.wait_for_function(
        "() => document.querySelector('#toggle-chat .badge').textContent === '3'", timeout=20_000
    )
    assert await bob.locator("#chat-panel").is_hidden()
    await bob.click("#toggle-chat")
    got = await wait_messages(bob, 3)
    assert [m["text"] for m in got] == [f"hello {n} from alice" for n in range(3)]
    assert {m["name"] for m in got} == {"alice"}, got
    assert all(":" in m["time"] for m in got), got
    assert await bob.locator("#toggle-chat .badge").is_hidden()

    # And back, with text that must stay text.
    await send(bob, "<b>not bold</b> & fine")
    got = await wait_messages(alice, 4)
    assert (got[-1]["name"], got[-1]["text"]) == ("bob", "<b>not bold</b> & fine"), got
    assert await alice.locator("#chat-messages b").count() == 0
    # Alice sees Bob's join line, and his leave line once he goes.
    await alice.wait_for_selector("#chat-messages li[data-kind='notice']:has-text('bob joined')")
    if mode == "video":
        await alice.screenshot(path=screenshot_path("chat.png"))
    await bob.context.close()
    await alice.wait_for_selector(
        "#chat-messages li[data-kind='notice']:has-text('bob left')", timeout=20_000
    )
    await alice.context.close()


async def test_browser_and_python_bot_chat(browser: Browser, sfu_server: ServerProcess) -> None:
    """The browser's chat and a pymediasoup bot's data channel (SfuClient) talk
    both ways, 20 messages in order, through the server's data consumers."""
    page = await open_peer(browser, sfu_server, "chat-bot", "alice")
    bot = await join_bot(sfu_server, "chat-bot", "bot", 440, video=False)
    received: list[DataMessage] = []
    twenty = asyncio.Event()

    def on_data(message: DataMessage) -> None:
        if message.label == "chat":
            received.append(message)
            if len(received) >= 20:
                twenty.set()

    bot.client.on("data", on_data)
    try:
        await wait_chat_ready(page)
        for n in range(20):
            await bot.client.send_data(f"bot says {n}")
        got = await wait_messages(page, 20)
        assert [m["text"] for m in got] == [f"bot says {n}" for n in range(20)]
        assert {m["name"] for m in got} == {"bot"}, got
        for n in range(20):
            await send(page, f"alice says {n}")
        await asyncio.wait_for(twenty.wait(), timeout=20)
        assert [m.data for m in received] == [f"alice says {n}" for n in range(20)]
        assert {m.peer_id for m in received} == {"alice"}
    finally:
        await bot.client.close()
        await page.context.close()
