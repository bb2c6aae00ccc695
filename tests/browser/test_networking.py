"""Chromium on the fallbacks for hostile networks: ICE over TCP, and TURN relay only."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from ..conftest import ServerProcess, start_server, stop_server
from ..e2e.test_turn import RELAY_MAX, RELAY_MIN, SECRET, TURN_PORT, coturn  # noqa: F401
from .test_browser import assert_rising, browser, open_peer, wait_tile_video  # noqa: F401

SELECTED_JS = """
async () => {
  const out = [];
  for (const transport of [window.sfuDebug.sendTransport, window.sfuDebug.recvTransport]) {
    const report = await transport.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    const local = report.get(pair.localCandidateId), remote = report.get(pair.remoteCandidateId);
    out.push({ protocol: local.protocol, localType: local.candidateType, relayProtocol: local.relayProtocol,
               remotePort: remote.port, remoteProtocol: remote.protocol });
  }
  return out;
}
"""


async def selected(page: Page) -> list[dict[str, Any]]:
    return list(await page.evaluate(SELECTED_JS))


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    return {"media": {"enable_tcp": True}}


async def test_chromium_forced_onto_ice_tcp(browser: Browser, sfu_server: ServerProcess) -> None:  # noqa: F811
    alice = await open_peer_with(browser, sfu_server, "tcp", "alice", "forceTcp=1")
    bob = await open_peer(browser, sfu_server, "tcp", "bob")
    await wait_tile_video(bob, "alice")
    await wait_tile_video(alice, "bob")
    await assert_rising(bob, "alice", "video", "framesDecoded")
    await assert_rising(alice, "bob", "video", "framesDecoded")
    pairs = await selected(alice)
    print(f"\nalice's selected pairs over ICE-TCP: {pairs}")
    assert all(p["protocol"] == "tcp" and p["remoteProtocol"] == "tcp" for p in pairs), pairs
    assert "over TCP" in sfu_server.log()


async def open_peer_with(
    browser: Browser,  # noqa: F811 (the fixture, imported above)
    server: ServerProcess,
    room: str,
    peer: str,
    extra: str,
) -> Page:
    """open_peer with extra URL parameters."""
    context = await browser.new_context(viewport={"width": 1000, "height": 700})
    await context.grant_permissions(["camera", "microphone"])
    page = await context.new_page()
    await page.goto(
        f"{server.http_url}/?roomId={room}&peerId={peer}&displayName={peer}"
        f"&mode=video&handler=Chrome111&autojoin=1&{extra}"
    )
    await page.wait_for_selector("#connection-state[data-state='connected']", timeout=20_000)
    return page


@pytest.fixture
def turn_server(tmp_path: Path, coturn: subprocess.Popen[bytes]) -> Iterator[ServerProcess]:  # noqa: F811
    turn = (
        f'\n[[ice_servers]]\nurls = ["turn:127.0.0.1:{TURN_PORT}?transport=udp"]\n'
        f'shared_secret = "{SECRET}"\nttl = 600\n'
    )
    server = start_server(tmp_path, extra_toml=turn)
    yield server
    stop_server(server)


async def test_chromium_relay_only_through_coturn(
    browser: Browser,  # noqa: F811 (the fixture, imported above)
    turn_server: ServerProcess,
) -> None:
    alice = await open_peer_with(browser, turn_server, "relay", "alice", "relay=1")
    bob = await open_peer(browser, turn_server, "relay", "bob")
    await wait_tile_video(bob, "alice", timeout=30)
    await wait_tile_video(alice, "bob", timeout=30)
    await assert_rising(bob, "alice", "video", "framesDecoded")
    await assert_rising(alice, "bob", "video", "framesDecoded")
    pairs = await selected(alice)
    print(f"\nalice's selected pairs with iceTransportPolicy relay: {pairs}")
    assert all(p["localType"] == "relay" for p in pairs), pairs
