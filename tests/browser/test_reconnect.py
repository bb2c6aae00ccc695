"""Automatic reconnection of the browser client (docs/protocol.md, "Reconnection and
session resume"; client/README.md, "Reconnection").

A page cannot make its own WebSocket drop abnormally, so the browser under test
(alice) loads the page through a small TCP proxy on 127.0.0.1 in front of the
server, and her WebSocket goes through it too. The proxy severs all its
connections at once (no WebSocket close frame: what a network failure looks like
to both ends) and can refuse new ones for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from playwright.async_api import Browser, Page

from ..conftest import ServerProcess
from . import test_browser
from .test_browser import CHROMIUM, assert_rising, inbound, open_peer, wait_tile_video

browser = test_browser.browser  # the fixture: headless Chromium in the loopback-only namespace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (make test installs it)"
)

RECONNECT_BOUND_S = 10.0
DOWN_S = 4.0  # how long the second cut refuses new connections


# --- the proxy ------------------------------------------------------------------


class SeveringProxy:
    """A TCP proxy on 127.0.0.1 to the server's HTTP/WebSocket port.

    ``sever()`` aborts every connection on both sides (TCP closed without a
    WebSocket close frame); with ``block_for`` new connections are dropped as
    soon as their first bytes arrive, for that many seconds. ``websocket_attempts``
    counts the connections that began with a WebSocket upgrade request.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.websocket_attempts = 0
        self.refused = 0
        self._blocked_until = 0.0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def sever(self, block_for: float = 0.0) -> int:
        """Drops every connection now; returns how many were cut."""
        self._blocked_until = time.monotonic() + block_for
        pairs = list(self._pairs)
        self._pairs.clear()
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        return len(pairs)

    async def close(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            first = await reader.read(65536)
            if not first:
                writer.close()
                return
            if b"upgrade: websocket" in first.lower():
                self.websocket_attempts += 1
            if time.monotonic() < self._blocked_until:
                self.refused += 1
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port
                )
            except OSError:
                writer.transport.abort()
                return
            pair = (writer, up_writer)
            self._pairs.add(pair)
            up_writer.write(first)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            self._pairs.discard(pair)
        finally:
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except Exception:
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()


@dataclass
class ViaProxy:
    """What open_peer reads of a ServerProcess: the page (and so its WebSocket) via the proxy."""

    http_url: str


@pytest.fixture
async def proxy(sfu_server: ServerProcess) -> AsyncIterator[SeveringProxy]:
    instance = SeveringProxy(sfu_server.http_port)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


# --- page-side recorders ----------------------------------------------------------

# Every change of #connection-state's data-state, with the page's clock.
RECORD_STATES_JS = """
() => {
  const pill = document.getElementById('connection-state');
  window.__states = [{ state: pill.dataset.state, t: performance.now() }];
  new MutationObserver(() => window.__states.push({ state: pill.dataset.state, t: performance.now() }))
    .observe(pill, { attributes: true, attributeFilter: ['data-state'] });
}
"""

# Watches the tile of `peerId`: whether it ever leaves the DOM (or is replaced),
# and the RoomClient's peerremoved/peerleft events (peerClosed from the server).
WATCH_TILE_JS = """
(peerId) => {
  const selector = `.tile[data-peer-id="${peerId}"]:not(.screen)`;
  const tile = document.querySelector(selector);
  const watch = { tile, selector, detached: 0, events: [] };
  new MutationObserver(() => { if (!tile.isConnected) watch.detached += 1; })
    .observe(document.getElementById('tiles'), { childList: true, subtree: true });
  const client = window.sfuDebug.client;
  client.on('peerremoved', (id) => watch.events.push(['peerremoved', id]));
  client.on('peerleft', (view) => watch.events.push(['peerleft', view.id]));
  window.__tileWatch = watch;
  return Boolean(tile);
}
"""

TILE_WATCH_JS = """
() => {
  const w = window.__tileWatch;
  return { detached: w.detached, events: w.events, attached: w.tile.isConnected,
           same: document.querySelector(w.selector) === w.tile };
}
"""

# Counts the WebSockets the page opens from now on (the app looks WebSocket up at each socket).
COUNT_WEBSOCKETS_JS = """
() => {
  const Original = window.WebSocket;
  window.__websockets = 0;
  window.WebSocket = function (...args) { window.__websockets += 1; return new Original(...args); };
  window.WebSocket.prototype = Original.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
}
"""

RECOVERED_JS = """
(after) => {
  const s = window.__states.filter((x) => x.t >= after);
  const i = s.findIndex((x) => x.state === 'reconnecting');
  return i >= 0 && s.slice(i).some((x) => x.state === 'connected') &&
    document.getElementById('connection-state').dataset.state === 'connected';
}
"""


async def consumer_ids(page: Page) -> list[str]:
    return cast(
        list[str], await page.evaluate("() => [...window.sfuDebug.consumers.keys()].sort()")
    )


async def frames_of(page: Page, peer_id: str) -> int:
    return int((await inbound(page, peer_id, "video"))["framesDecoded"])


async def reconnection_ms(page: Page, after: float) -> float:
    """From 'reconnecting' to the following 'connected' in the page's state log."""
    states = await page.evaluate("(after) => window.__states.filter((x) => x.t >= after)", after)
    start = next(x["t"] for x in states if x["state"] == "reconnecting")
    end = next(x["t"] for x in states if x["state"] == "connected" and x["t"] >= start)
    return float(end - start)


class Monitor:
    """Samples /health and bob's framesDecoded of alice while a reconnection runs."""

    def __init__(self, server: ServerProcess, bob: Page) -> None:
        self.server = server
        self.bob = bob
        self.peers: list[int] = []
        self.frames: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Monitor:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            health: dict[str, Any] = await asyncio.to_thread(self.server.health)
            self.peers.append(int(health["peers"]))
            self.frames.append((time.monotonic(), await frames_of(self.bob, "alice")))
            await asyncio.sleep(0.1)

    def frames_between(self, start: float, end: float) -> int:
        inside = [count for t, count in self.frames if start <= t <= end]
        return inside[-1] - inside[0] if len(inside) >= 2 else 0


async def assert_nothing_noticed(bob: Page, monitor: Monitor) -> None:
    watch = await bob.evaluate(TILE_WATCH_JS)
    assert watch == {"detached": 0, "events": [], "attached": True, "same": True}, watch
    assert monitor.peers, f"/health peers: {monitor.peers}"
    assert set(monitor.peers) == {2}, f"/health peers: {monitor.peers}"
    counts = [count for _, count in monitor.frames]
    assert counts == sorted(counts), f"bob's framesDecoded of alice went back: {counts}"


# --- tests ------------------------------------------------------------------------


async def test_dropped_websocket_resumes_and_nobody_notices(
    browser: Browser, sfu_server: ServerProcess, proxy: SeveringProxy
) -> None:
    alice = await open_peer(
        browser, cast(ServerProcess, ViaProxy(proxy.http_url)), "resume", "alice"
    )
    bob = await open_peer(browser, sfu_server, "resume", "bob")
    await wait_tile_video(alice, "bob")
    await wait_tile_video(bob, "alice")
    await assert_rising(bob, "alice", "video", "framesDecoded", seconds=1.0)
    assert await bob.evaluate(WATCH_TILE_JS, "alice")
    assert await alice.evaluate(WATCH_TILE_JS, "bob")
    await alice.evaluate(RECORD_STATES_JS)
    consumers = await consumer_ids(alice)
    assert len(consumers) == 2, consumers
    assert sfu_server.health()["peers"] == 2

    async with Monitor(sfu_server, bob) as monitor:
        # 1. A plain drop: the proxy is back at once.
        after = await alice.evaluate("performance.now()")
        started = time.monotonic()
        assert proxy.sever() >= 1
        await alice.wait_for_function(RECOVERED_JS, arg=after, timeout=RECONNECT_BOUND_S * 1000)
        wall = time.monotonic() - started
        in_page = await reconnection_ms(alice, after)
        recovery = await alice.evaluate("() => window.sfuDebug.client.lastRecovery")
        print(
            f"\nreconnection after a dropped WebSocket: {in_page:.0f} ms in the page "
            f"(reconnecting -> connected), {wall * 1000:.0f} ms from the cut to seeing 'connected'; "
            f"client says {recovery}"
        )
        assert recovery["kind"] == "resume", recovery
        assert await consumer_ids(alice) == consumers
        await assert_rising(bob, "alice", "video", "framesDecoded", seconds=1.0)
        await assert_rising(alice, "bob", "video", "framesDecoded", seconds=1.0)
        await assert_nothing_noticed(bob, monitor)

        # 2. The network stays down 4 s: retries with backoff, media flows meanwhile.
        attempts_before = proxy.websocket_attempts
        after = await alice.evaluate("performance.now()")
        started = time.monotonic()
        proxy.sever(block_for=DOWN_S)
        await alice.wait_for_selector("#connection-state[data-state='reconnecting']", timeout=2000)
        alice_frames = await frames_of(alice, "bob")
        await asyncio.sleep(max(0.0, started + DOWN_S - 1.0 - time.monotonic()))
        state = await alice.get_attribute("#connection-state", "data-state")
        # (Every attempt before DOWN_S is refused: only a slow check may see it back.)
        assert state == "reconnecting" or time.monotonic() - started >= DOWN_S, state
        during = monitor.frames_between(started, time.monotonic())
        alice_during = await frames_of(alice, "bob") - alice_frames
        await alice.wait_for_function(RECOVERED_JS, arg=after, timeout=RECONNECT_BOUND_S * 1000)
        wall = time.monotonic() - started
        in_page = await reconnection_ms(alice, after)
        attempts = proxy.websocket_attempts - attempts_before
        print(
            f"with the network down {DOWN_S:.0f} s: back after {in_page:.0f} ms ({wall * 1000:.0f} ms wall), "
            f"{attempts} WebSocket attempts ({proxy.refused} refused in all); while down bob decoded "
            f"{during} frames of alice, alice {alice_during} of bob"
        )
        assert during >= 10, f"bob's video of alice stalled while she was reconnecting: {during}"
        assert alice_during >= 10, (
            f"alice's video of bob stalled while reconnecting: {alice_during}"
        )
        assert 2 <= attempts <= 12, f"{attempts} attempts in ~{DOWN_S:.0f} s: backoff?"
        recovery = await alice.evaluate("() => window.sfuDebug.client.lastRecovery")
        assert recovery["kind"] == "resume", recovery
        assert await consumer_ids(alice) == consumers
        await assert_rising(bob, "alice", "video", "framesDecoded", seconds=1.0)
        await assert_rising(alice, "bob", "video", "framesDecoded", seconds=1.0)
        await assert_nothing_noticed(bob, monitor)

    assert await alice.evaluate(TILE_WATCH_JS) == {
        "detached": 0,
        "events": [],
        "attached": True,
        "same": True,
    }
    assert await alice.locator("#error").is_hidden()


async def test_server_shutdown_is_fatal_and_not_retried(
    browser: Browser, sfu_server: ServerProcess, proxy: SeveringProxy
) -> None:
    alice = await open_peer(
        browser, cast(ServerProcess, ViaProxy(proxy.http_url)), "shutdown", "alice"
    )
    bob = await open_peer(browser, sfu_server, "shutdown", "bob")
    await wait_tile_video(bob, "alice")
    for page in (alice, bob):
        await page.evaluate(COUNT_WEBSOCKETS_JS)

    sfu_server.process.send_signal(signal.SIGTERM)
    for page in (alice, bob):
        await page.wait_for_selector("#connection-state[data-state='disconnected']", timeout=10_000)
        await page.wait_for_function(
            "() => /shutting down/i.test(document.getElementById('error').textContent)",
            timeout=5000,
        )
    await asyncio.to_thread(sfu_server.process.wait, 10)
    attempts = proxy.websocket_attempts
    await asyncio.sleep(5.0)  # longer than several backoff steps
    for name, page in (("alice", alice), ("bob", bob)):
        state = await page.get_attribute("#connection-state", "data-state")
        assert state == "disconnected", f"{name}: {state}"
        assert await page.evaluate("() => window.__websockets") == 0, f"{name} tried to reconnect"
        message = await page.locator("#error .error-message").text_content()
        print(f"\n{name}: {message!r}")
    assert proxy.websocket_attempts == attempts, (
        "alice's WebSocket attempts went on through the proxy"
    )


@pytest.mark.parametrize(
    "server_overrides", [{"signaling": {"peer_grace_period": 1.0}}], ids=["grace-1s"]
)
async def test_expired_session_joins_afresh_with_the_same_mute_state(
    browser: Browser, sfu_server: ServerProcess, proxy: SeveringProxy
) -> None:
    """The server forgets alice 1 s after the drop; her `resume` gets 404 and she joins
    afresh on her own: new transports and consumers, mic published again muted."""
    alice = await open_peer(
        browser, cast(ServerProcess, ViaProxy(proxy.http_url)), "rejoin", "alice"
    )
    bob = await open_peer(browser, sfu_server, "rejoin", "bob")
    await wait_tile_video(alice, "bob")
    await wait_tile_video(bob, "alice")
    tile = '.tile[data-peer-id="alice"]:not(.screen)'
    await alice.click("#toggle-mic")
    await bob.wait_for_selector(f'{tile} .mic-icon[data-muted="true"]', timeout=5000)
    old_consumers = await consumer_ids(alice)
    await alice.evaluate(RECORD_STATES_JS)
    after = await alice.evaluate("performance.now()")

    proxy.sever(block_for=3.0)
    await bob.wait_for_selector(tile, state="detached", timeout=5000)
    await alice.wait_for_function(RECOVERED_JS, arg=after, timeout=15_000)
    in_page = await reconnection_ms(alice, after)
    recovery = await alice.evaluate("() => window.sfuDebug.client.lastRecovery")
    print(f"\nfresh join after the session expired: {in_page:.0f} ms in the page; {recovery}")
    assert recovery["kind"] == "rejoin", recovery

    await wait_tile_video(bob, "alice")
    await wait_tile_video(alice, "bob")
    await bob.wait_for_selector(f'{tile} .mic-icon[data-muted="true"]', timeout=5000)
    assert await alice.get_attribute("#toggle-mic", "aria-pressed") == "true"
    await assert_rising(bob, "alice", "video", "framesDecoded", seconds=1.0)
    await assert_rising(alice, "bob", "video", "framesDecoded", seconds=1.0)
    new_consumers = await consumer_ids(alice)
    assert len(new_consumers) == 2
    assert not set(new_consumers) & set(old_consumers)
    health = sfu_server.health()
    assert health["peers"] == 2, health
    assert health["producersByKind"] == {"audio": 2, "video": 2}, health
    assert await alice.locator(".tile:not(.local)").count() == 1

    # Unmuting works on the new session.
    await alice.click("#toggle-mic")
    await bob.wait_for_selector(f'{tile} .mic-icon[data-muted="false"]', timeout=5000)
