"""Per client IP caps through real WebSocket upgrades from 127.0.0.1:
concurrent connections and the join rate, refused with HTTP 429 and a JSON
body saying why, counted in sfu_websocket_refusals by reason."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import aiohttp
import pytest

from ..conftest import ServerProcess

CONNECTIONS: dict[str, dict[str, Any]] = {
    "limits": {"max_connections_per_ip": 3, "joins_per_second_per_ip": 0}
}
JOIN_RATE: dict[str, dict[str, Any]] = {
    "limits": {"joins_per_second_per_ip": 0.5, "join_burst_per_ip": 3}
}


def upgrade_headers() -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Protocol": "protoo",
    }


def url(server: ServerProcess, peer: str) -> str:
    return f"{server.ws_url}/?roomId=limits&peerId={peer}"


async def refusal(session: aiohttp.ClientSession, server: ServerProcess, peer: str) -> Any:
    """An upgrade that must be refused: its status, body and Retry-After."""
    address = f"{server.http_url}/?roomId=limits&peerId={peer}"
    async with session.get(address, headers=upgrade_headers()) as response:
        assert response.status == 429, await response.text()
        assert response.content_type == "application/json"
        return await response.json(), response.headers.get("Retry-After")


async def refusals(session: aiohttp.ClientSession, server: ServerProcess, reason: str) -> float:
    async with session.get(f"{server.http_url}/metrics") as response:
        metrics = await response.text()
    line = next(ln for ln in metrics.splitlines() if f'refusals_total{{reason="{reason}"}}' in ln)
    return float(line.split()[-1])


async def connect_when_admitted(
    session: aiohttp.ClientSession, server: ServerProcess, peer: str, timeout: float
) -> aiohttp.ClientWebSocketResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await session.ws_connect(url(server, peer), protocols=("protoo",))
        except aiohttp.WSServerHandshakeError as error:
            if error.status != 429 or loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("server_overrides", [CONNECTIONS], ids=["3-connections"])
async def test_the_connection_over_the_cap_is_429_until_one_closes(
    sfu_server: ServerProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        open_ones = [
            await session.ws_connect(url(sfu_server, f"p{n}"), protocols=("protoo",))
            for n in range(3)
        ]
        body, retry_after = await refusal(session, sfu_server, "p3")
        assert body["error"] == "too_many_requests"
        assert body["reason"] == "too_many_connections"
        assert "3 WebSocket connections" in body["message"]
        assert retry_after is None
        assert await refusals(session, sfu_server, "too_many_connections") == 1
        await open_ones.pop().close()
        # The server lets the slot go once it has seen the close.
        admitted = await connect_when_admitted(session, sfu_server, "p3", timeout=5)
        body, _ = await refusal(session, sfu_server, "p4")
        assert body["reason"] == "too_many_connections"
        for ws in [*open_ones, admitted]:
            await ws.close()
    assert "Traceback" not in sfu_server.log()


@pytest.mark.parametrize("server_overrides", [JOIN_RATE], ids=["burst-3-at-0.5"])
async def test_the_join_burst_is_enforced_and_refills(sfu_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for n in range(3):
            ws = await session.ws_connect(url(sfu_server, f"j{n}"), protocols=("protoo",))
            await ws.close()
        body, retry_after = await refusal(session, sfu_server, "j3")
        assert body["error"] == "too_many_requests"
        assert body["reason"] == "join_rate"
        assert "at most 3 at once" in body["message"]
        assert retry_after is not None
        assert 1 <= int(retry_after) <= 2
        assert await refusals(session, sfu_server, "join_rate") == 1
        # 0.5 joins a second: one more within about 2 s, and only one.
        ws = await connect_when_admitted(session, sfu_server, "j3", timeout=4)
        await ws.close()
        body, _ = await refusal(session, sfu_server, "j4")
        assert body["reason"] == "join_rate"
    assert "Traceback" not in sfu_server.log()


@pytest.mark.parametrize("server_overrides", [CONNECTIONS], ids=["3-connections"])
def test_health_shows_the_per_ip_caps(sfu_server: ServerProcess) -> None:
    assert sfu_server.health()["limits"] == {
        "maxConnectionsPerIp": 3,
        "joinsPerSecondPerIp": 0.0,
        "joinBurstPerIp": 5000,
    }
