"""The browser client in real headless Chromium (Debian's), driven by Playwright.

Chromium and the server run in this session's loopback-only network namespace
(tests/conftest.py), and each test checks through getStats that the selected
ICE candidate pair is 127.0.0.1 on both ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from sfu.client import SfuClient

from ..conftest import ISOLATION, LOOPBACK, REPO, ServerProcess
from ..e2e.helpers import join as join_bot
from ..e2e.helpers import wait_until

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = REPO / "test-output"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (make test installs it)"
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not ISOLATION["netns"]:
        pytest.fail(
            "browser tests need a loopback-only network namespace, or Chromium offers the "
            f"machine's other addresses: {ISOLATION['reason']}"
        )
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            await instance.close()


async def open_peer(
    browser: Browser, server: ServerProcess, room: str, peer_id: str, *, mode: str = "video"
) -> Page:
    context = await browser.new_context(viewport={"width": 1000, "height": 700})
    await context.grant_permissions(["camera", "microphone"])
    page = await context.new_page()

    def print_errors(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            print(f"[{peer_id} console] {msg.text}")

    page.on("console", print_errors)
    await page.goto(
        f"{server.http_url}/?roomId={room}&peerId={peer_id}&displayName={peer_id}"
        f"&mode={mode}&handler=Chrome111&autojoin=1"
    )
    await page.wait_for_selector(f"#room[data-mode='{mode}']", timeout=15_000)
    await page.wait_for_selector("#connection-state[data-state='connected']", timeout=15_000)
    return page


# --- getStats helpers, evaluated in the page ------------------------------------

INBOUND_JS = """
async ([peerId, kind]) => {
  const out = [];
  for (const consumer of window.sfuDebug.consumers.values()) {
    if (consumer.closed || consumer.kind !== kind) continue;
    if ((consumer.appData || {}).peerId !== peerId) continue;
    const report = await consumer.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') out.push({
        ssrc: s.ssrc, framesDecoded: s.framesDecoded || 0,
        totalSamplesReceived: s.totalSamplesReceived || 0,
        packetsLost: s.packetsLost || 0, packetsReceived: s.packetsReceived || 0,
      });
    });
  }
  return out;
}
"""

# Chrome makes a remote-outbound-rtp stat from each SR it accepts for a stream.
REMOTE_OUTBOUND_JS = """
async ([peerId]) => {
  const out = {};
  for (const consumer of window.sfuDebug.consumers.values()) {
    if (consumer.closed || (consumer.appData || {}).peerId !== peerId) continue;
    const report = await consumer.getStats();
    report.forEach((s) => {
      if (s.type === 'remote-outbound-rtp') out[consumer.kind] = s.reportsSent || 0;
    });
  }
  return out;
}
"""

SELECTED_PAIRS_JS = """
async () => {
  const pairs = [];
  for (const transport of [window.sfuDebug.sendTransport, window.sfuDebug.recvTransport]) {
    if (!transport) continue;
    const report = await transport.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) pair = s;
    });
    if (!pair) { pairs.push(null); continue; }
    const local = report.get(pair.localCandidateId), remote = report.get(pair.remoteCandidateId);
    pairs.push({ local: local.address || local.ip, remote: remote.address || remote.ip });
  }
  return pairs;
}
"""


RECORD_SPEAKING_JS = """
() => {
  window.speakingLog = [];
  const record = (item) => window.speakingLog.push([performance.now(), item.dataset.peerId]);
  document.querySelectorAll('#members .member.speaking').forEach(record);
  new MutationObserver((mutations) => {
    for (const m of mutations) if (m.target.classList.contains('speaking')) record(m.target);
  }).observe(document.querySelector('#members'), { attributes: true, attributeFilter: ['class'], subtree: true });
}
"""


async def inbound(page: Page, peer_id: str, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The inbound-rtp stats of the consumer of that peer's track, once it exists.

    A peer is listed as soon as it joins; its consumers follow when it produces.
    """
    deadline = time.monotonic() + timeout
    while True:
        stats = await page.evaluate(INBOUND_JS, [peer_id, kind])
        if stats or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert stats, f"no {kind} inbound-rtp from {peer_id} within {timeout:.0f} s"
    return dict(stats[0])


async def assert_rising(
    page: Page, peer_id: str, kind: str, field: str, seconds: float = 2.0
) -> int:
    first = (await inbound(page, peer_id, kind))[field]
    await asyncio.sleep(seconds)
    second = (await inbound(page, peer_id, kind))[field]
    assert second > first, f"{field} of {kind} from {peer_id} did not rise: {first} -> {second}"
    return int(second - first)


async def sender_reports_taken(
    page: Page, peer_id: str, kinds: tuple[str, ...], timeout: float = 10.0
) -> dict[str, int]:
    """How many of the server's SRs Chrome accepted per kind of that peer's consumers
    (waiting until every kind has one): proof that it parses our compound RTCP."""
    deadline = time.monotonic() + timeout
    while True:
        taken = await page.evaluate(REMOTE_OUTBOUND_JS, [peer_id])
        if all(taken.get(kind) for kind in kinds) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert all(taken.get(kind) for kind in kinds), f"SRs taken from the server: {taken}"
    return dict(taken)


async def assert_loopback_pairs(page: Page) -> None:
    pairs = await page.evaluate(SELECTED_PAIRS_JS)
    assert pairs, f"no selected candidate pair: {pairs}"
    assert all(pairs), f"no selected candidate pair: {pairs}"
    for pair in pairs:
        assert pair == {"local": "127.0.0.1", "remote": "127.0.0.1"}, pairs


async def wait_tile_video(page: Page, peer_id: str, timeout: float = 15) -> None:
    await page.wait_for_function(
        """(id) => { const v = document.querySelector(`.tile[data-peer-id="${id}"] video`);
                     return !!v && v.videoWidth > 0; }""",
        arg=peer_id,
        timeout=timeout * 1000,
    )


def screenshot_path(name: str) -> str:
    OUTPUT.mkdir(exist_ok=True)
    return str(OUTPUT / name)


# --- tests ----------------------------------------------------------------------


async def test_two_browsers_in_a_video_room(browser: Browser, sfu_server: ServerProcess) -> None:
    a = await open_peer(browser, sfu_server, "video2", "alice")
    b = await open_peer(browser, sfu_server, "video2", "bob")
    await wait_tile_video(a, "bob")
    await wait_tile_video(b, "alice")
    for page, other in ((a, "bob"), (b, "alice")):
        frames = await assert_rising(page, other, "video", "framesDecoded")
        samples = await assert_rising(page, other, "audio", "totalSamplesReceived")
        print(f"\n{other} -> peer: {frames} frames and {samples} audio samples in 2 s")
        await assert_loopback_pairs(page)
        # The first RTCP tick reports both streams in one compound packet.
        print(f"SRs taken: {await sender_reports_taken(page, other, ('audio', 'video'))}")
    await a.screenshot(path=screenshot_path("video-room.png"))


async def test_chrome_rtx_is_never_forwarded_on_the_media_ssrc(
    browser: Browser, sfu_server: ServerProcess
) -> None:
    """Chrome sends RTX (retransmissions and probe padding). The server must forward
    it only on the consumer's RTX SSRC or drop it: RTX on the media SSRC makes the
    receiver's SRTP reject every later packet as a replay, and the video dies."""
    await open_peer(browser, sfu_server, "rtx", "alice")
    b = await open_peer(browser, sfu_server, "rtx", "bob")
    await wait_tile_video(b, "alice")
    # Video keeps decoding for a long stretch, through Chrome's probing phase.
    total = 0
    for _ in range(4):
        total += await assert_rising(b, "alice", "video", "framesDecoded", seconds=2.0)
    health = sfu_server.health()
    dropped = health["droppedPackets"]
    stats = await b.evaluate(INBOUND_JS, ["alice", "video"])
    print(
        f"\nChrome RTX: {dropped.get('rtx-padding', 0)} padding-only RTX packets dropped; "
        f"{total} frames decoded in 8 s; receiver stats {stats}"
    )
    assert dropped.get("rtx-padding", 0) > 0, "Chrome sent no RTX at all: the test proves nothing"
    assert total >= 8 * 5, "video froze after Chrome's RTX"
    assert stats[0]["packetsLost"] <= 5


async def test_mute_and_camera_off_show_on_the_other_side(
    browser: Browser, sfu_server: ServerProcess
) -> None:
    a = await open_peer(browser, sfu_server, "mute", "alice")
    b = await open_peer(browser, sfu_server, "mute", "bob")
    await wait_tile_video(b, "alice")
    tile = '.tile[data-peer-id="alice"]'
    await b.wait_for_selector(f'{tile} .mic-icon[data-muted="false"]')

    await a.click("#toggle-mic")
    await a.click("#toggle-cam")
    await b.wait_for_selector(f'{tile} .mic-icon[data-muted="true"]', timeout=5000)
    await b.wait_for_selector(f'{tile} .cam-icon[data-off="true"]', timeout=5000)
    await asyncio.sleep(1.0)  # frames in flight
    before = (await inbound(b, "alice", "video"))["framesDecoded"]
    await asyncio.sleep(2.0)
    after = (await inbound(b, "alice", "video"))["framesDecoded"]
    assert after == before, f"frames kept rising while the camera was off: {before} -> {after}"

    await a.click("#toggle-mic")
    await a.click("#toggle-cam")
    await b.wait_for_selector(f'{tile} .mic-icon[data-muted="false"]', timeout=5000)
    await b.wait_for_selector(f'{tile} .cam-icon[data-off="false"]', timeout=5000)
    await assert_rising(b, "alice", "video", "framesDecoded", seconds=3.0)


async def test_leaving_browser_tile_disappears(browser: Browser, sfu_server: ServerProcess) -> None:
    a = await open_peer(browser, sfu_server, "leave", "alice")
    b = await open_peer(browser, sfu_server, "leave", "bob")
    await wait_tile_video(b, "alice")
    started = time.monotonic()
    await a.click("#leave")
    await b.wait_for_selector('.tile[data-peer-id="alice"]', state="detached", timeout=5000)
    elapsed = time.monotonic() - started
    print(f"\nalice's tile disappeared from bob's page {elapsed * 1000:.0f} ms after she left")
    assert await b.locator(".tile:not(.local)").count() == 0, "a stale tile was left behind"
    assert await wait_until(lambda: sfu_server.health()["peers"] == 1, timeout=5)


async def test_browser_and_python_bot_in_one_room(
    browser: Browser, sfu_server: ServerProcess
) -> None:
    page = await open_peer(browser, sfu_server, "mixed", "alice")
    bot = await join_bot(sfu_server, "mixed", "bot", 440)
    try:
        await wait_tile_video(page, "bot")
        await assert_rising(page, "bot", "video", "framesDecoded")
        await assert_rising(page, "bot", "audio", "totalSamplesReceived")
        assert await bot.client.wait_for_consumers(2, timeout=15)
        video = bot.sink_for("alice", "video")
        audio = bot.sink_for("alice", "audio")
        assert await video.wait_frames(20, timeout=15), f"bot decoded {video.frames} frames"
        assert video.size is not None
        assert video.size[0] > 0
        assert await audio.wait_frames(50, timeout=10)
        print(f"\nbot decoded {video.frames} frames of {video.size} from the browser")
        await assert_loopback_pairs(page)
    finally:
        await bot.client.close()


async def test_voice_channel(browser: Browser, sfu_server: ServerProcess) -> None:
    a = await open_peer(browser, sfu_server, "voice", "alice", mode="voice")
    b = await open_peer(browser, sfu_server, "voice", "bob", mode="voice")
    for page, other in ((a, "bob"), (b, "alice")):
        await page.wait_for_selector(f'#members .member[data-peer-id="{other}"]', timeout=10_000)
        await assert_rising(page, other, "audio", "totalSamplesReceived")
    health = sfu_server.health()
    assert health["producersByKind"] == {"audio": 2, "video": 0}, health

    # Only alice's fake mic sends: bob mutes. Her member entry lights up on bob's page.
    # Chromium's fake mic beeps 20 ms every 500 ms, so she is the speaker for one
    # 300 ms interval at a time: record the highlights rather than poll for one,
    # which a polling period locked to the beeps can miss every time.
    await b.evaluate(RECORD_SPEAKING_JS)
    await b.click("#toggle-mic")
    muted_at = await b.evaluate("performance.now()")
    await b.wait_for_function(
        "() => window.speakingLog.some(([, peerId]) => peerId === 'alice')", timeout=10_000
    )
    await asyncio.sleep(2.0)
    log = await b.evaluate("window.speakingLog")
    # Bob's own last packets before the pause may still count for one interval.
    bob_after_mute = [t for t, peer_id in log if peer_id == "bob" and t > muted_at + 1000]
    assert not bob_after_mute, f"bob was shown speaking while muted: {log}"
    await b.screenshot(path=screenshot_path("voice-channel.png"))
    await assert_loopback_pairs(a)


async def test_python_bot_hears_a_voice_channel_member(
    browser: Browser, sfu_server: ServerProcess
) -> None:
    """A voice-only bot (no video producer) and a browser in voice mode."""
    page = await open_peer(browser, sfu_server, "voice-bot", "alice", mode="voice")
    bot = SfuClient(sfu_server.ws_url, "voice-bot", "bot", ice_addresses=LOOPBACK)
    try:
        await bot.join()
        assert await bot.wait_for_consumers(1, timeout=15)
        await page.wait_for_selector('#members .member[data-peer-id="bot"]', timeout=10_000)
        assert all(c.kind == "audio" for c in bot.consumers.values())
    finally:
        await bot.close()
