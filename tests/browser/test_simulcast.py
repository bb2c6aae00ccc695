"""Simulcast from real headless Chromium: its webcam (1280x720, fake capture)
goes out as three layers; a Python subscriber picks each in turn and decodes
it at its size, and falls back when the browser stops the top layer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from ..conftest import ServerProcess
from ..e2e.helpers import Participant, wait_until
from ..e2e.helpers import join as join_bot
from . import test_browser
from .test_browser import assert_rising, inbound, open_peer, wait_tile_video

pytestmark = test_browser.pytestmark  # skipped without Chromium
browser = test_browser.browser  # the fixture: headless Chromium in the loopback-only namespace

# What layers 0, 1, 2 of a 1280x720 capture decode to (scaleResolutionDownBy 4, 2, 1).
LAYER_WIDTHS = {0: 320, 1: 640, 2: 1280}

SET_TOP_LAYER_ACTIVE_JS = """
async (active) => {
  const producer = [...window.sfuDebug.producers.values()].find((p) => p.kind === 'video');
  const sender = producer.rtpSender;
  const parameters = sender.getParameters();
  parameters.encodings[parameters.encodings.length - 1].active = active;
  await sender.setParameters(parameters);
  return parameters.encodings.length;
}
"""

CAPTURE_JS = """
() => {
  const producer = [...window.sfuDebug.producers.values()].find((p) => p.kind === 'video');
  return producer ? { ...producer.track.getSettings(), encodings: producer.rtpParameters.encodings.length } : null;
}
"""


async def decoded_width(bot: Participant, width: int, timeout: float) -> bool:
    sink = bot.sink_for("alice", "video")
    return await wait_until(lambda: sink.size is not None and sink.size[0] == width, timeout)


async def frame_rate(bot: Participant, settle: float, seconds: float) -> float:
    """Frames the bot decoded per second over ``seconds``, after ``settle``."""
    sink = bot.sink_for("alice", "video")
    await asyncio.sleep(settle)
    first = sink.frames
    await asyncio.sleep(seconds)
    return (sink.frames - first) / seconds


@pytest.mark.parametrize(
    "server_overrides",
    [{}, {"workers": {"count": 2, "max_peers_per_router": 1}}],
    ids=["one-worker", "two-workers"],  # two: the subscriber's router is on the other worker
)
async def test_python_subscriber_switches_chromium_simulcast_layers(
    browser: Browser, sfu_server: ServerProcess, server_overrides: dict[str, Any]
) -> None:
    page: Page = await open_peer(browser, sfu_server, "simulcast", "alice")
    bot = await join_bot(sfu_server, "simulcast", "bot", 440, audio=False, video=False)
    layers_changed: list[tuple[float, Any]] = []

    def on_notification(method: str, data: dict[str, Any]) -> None:
        if method == "consumerLayersChanged":
            layers_changed.append((time.monotonic(), data.get("spatialLayer")))

    bot.client.on("notification", on_notification)
    try:
        assert await bot.client.wait_for_consumers(2, timeout=15)
        capture = await page.evaluate(CAPTURE_JS)  # produced before the bot's consumers came
        assert capture["width"] == 1280, capture
        assert capture["encodings"] == 3, capture
        consumer = bot.consumer_for("alice", "video")
        if server_overrides:  # one router a worker, joined by a pipe
            routers = [w["routers"] for w in sfu_server.health()["workers"]]
            assert routers == [1, 1], routers
        # The default is the highest layer.
        assert await decoded_width(bot, 1280, timeout=20), bot.sink_for("alice", "video").size

        switch_times = {}
        for layer in (0, 1, 2):
            started = time.monotonic()
            await bot.client.request(
                "setConsumerPreferredLayers",
                {"consumerId": consumer.id, "spatialLayer": layer, "temporalLayer": 2},
            )
            assert await decoded_width(bot, LAYER_WIDTHS[layer], timeout=10), (
                layer,
                bot.sink_for("alice", "video").size,
            )
            decoded = time.monotonic() - started
            assert await wait_until(
                lambda layer=layer, since=started: any(
                    s == layer for t, s in layers_changed if t >= since
                ),
                5,
            ), layers_changed
            told = next(t for t, s in layers_changed if t >= started and s == layer) - started
            switch_times[layer] = (round(told, 2), round(decoded, 2))
        print(
            f"\nswitch to layer -> (layers changed, decoded at its width), seconds: {switch_times}"
        )

        # Temporal layer 0 of L1T3 is a quarter of the frames.
        rates = {}
        for temporal in (2, 0):
            await bot.client.request(
                "setConsumerPreferredLayers",
                {"consumerId": consumer.id, "spatialLayer": 2, "temporalLayer": temporal},
            )
            rates[temporal] = await frame_rate(bot, settle=1.0, seconds=3.0)
        print(f"frames per second at temporal layer 2 and 0: {rates}")
        assert rates[0] < 0.6 * rates[2], rates
        await bot.client.request(
            "setConsumerPreferredLayers",
            {"consumerId": consumer.id, "spatialLayer": 2, "temporalLayer": 2},
        )

        # The browser stops its top layer: the subscriber falls back, then goes back up.
        stopped = time.monotonic()
        assert await page.evaluate(SET_TOP_LAYER_ACTIVE_JS, False) == 3
        assert await decoded_width(bot, 640, timeout=10)
        fallback = time.monotonic() - stopped
        assert fallback < 2.5, f"fell back to layer 1 after {fallback:.2f} s"
        restarted = time.monotonic()
        await page.evaluate(SET_TOP_LAYER_ACTIVE_JS, True)
        assert await decoded_width(bot, 1280, timeout=10)
        back = time.monotonic() - restarted
        print(f"fallback to 640 wide in {fallback:.2f} s, back to 1280 in {back:.2f} s")
        assert any(s == 1 for t, s in layers_changed if t >= stopped)
        assert any(s == 2 for t, s in layers_changed if t >= restarted)
    finally:
        await bot.client.close()


SET_LAYERS_JS = """
async ([peerId, spatialLayer]) => {
  const consumer = [...window.sfuDebug.consumers.values()].find(
    (c) => c.kind === 'video' && !c.closed && (c.appData || {}).peerId === peerId);
  await window.sfuDebug.client.signaling.request(
    'setConsumerPreferredLayers', { consumerId: consumer.id, spatialLayer, temporalLayer: 2 });
}
"""

FRAME_WIDTH_JS = """
async (peerId) => {
  for (const consumer of window.sfuDebug.consumers.values()) {
    if (consumer.closed || consumer.kind !== 'video' || (consumer.appData || {}).peerId !== peerId) continue;
    let width = null;
    (await consumer.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') width = s.frameWidth || null; });
    return width;
  }
  return null;
}
"""


SET_HIDDEN_JS = """
(hidden) => {
  Object.defineProperty(document, 'visibilityState', { value: hidden ? 'hidden' : 'visible', configurable: true });
  document.dispatchEvent(new Event('visibilitychange'));
}
"""

VIDEO_PAUSED_JS = """
(peerId) => [...window.sfuDebug.consumers.values()].some(
  (c) => c.kind === 'video' && (c.appData || {}).peerId === peerId && c.paused)
"""

TILE_WIDTH_JS = """
(peerId) => {
  const video = document.querySelector(`.tile[data-peer-id="${peerId}"] video`);
  return Math.round(video.getBoundingClientRect().width * (window.devicePixelRatio || 1));
}
"""


async def browser_width(page: Page, peer_id: str, width: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await page.evaluate(FRAME_WIDTH_JS, peer_id) == width:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_chromium_subscriber_switches_chromium_simulcast_layers(
    browser: Browser, sfu_server: ServerProcess
) -> None:
    alice = await open_peer(browser, sfu_server, "simulcast2", "alice")
    bob = await open_peer(browser, sfu_server, "simulcast2", "bob")
    await wait_tile_video(bob, "alice")
    # The tile asks for the layer that fits its width, and shows the layer received.
    tile_width = await bob.evaluate(TILE_WIDTH_JS, "alice")
    fitting = 0 if tile_width <= 400 else 1 if tile_width <= 800 else 2
    assert await browser_width(bob, "alice", LAYER_WIDTHS[fitting], timeout=20), (
        tile_width,
        await bob.evaluate(FRAME_WIDTH_JS, "alice"),
    )
    await bob.wait_for_selector(
        f'.tile[data-peer-id="alice"] video[data-spatial-layer="{fitting}"]', timeout=5_000
    )
    print(f"\na tile {tile_width} px wide receives layer {fitting}")
    for layer in (0, 1, 2):
        started = time.monotonic()
        await bob.evaluate(SET_LAYERS_JS, ["alice", layer])
        assert await browser_width(bob, "alice", LAYER_WIDTHS[layer], timeout=20), (
            layer,
            await bob.evaluate(FRAME_WIDTH_JS, "alice"),
        )
        print(
            f"\nChromium subscriber: layer {layer} decoded after {time.monotonic() - started:.2f} s"
        )
    await assert_rising(bob, "alice", "video", "framesDecoded")
    assert await alice.evaluate(CAPTURE_JS) is not None

    # A hidden tab pauses its video consumers; shown again, they resume.
    await bob.evaluate(SET_HIDDEN_JS, True)
    await bob.wait_for_function(VIDEO_PAUSED_JS, arg="alice", timeout=5_000)
    await asyncio.sleep(0.5)  # what was in flight
    first = (await inbound(bob, "alice", "video"))["framesDecoded"]
    await asyncio.sleep(1.5)
    assert (await inbound(bob, "alice", "video"))["framesDecoded"] - first <= 1
    await bob.evaluate(SET_HIDDEN_JS, False)
    await assert_rising(bob, "alice", "video", "framesDecoded")
