from __future__ import annotations

from ..conftest import ServerProcess
from .helpers import join


async def test_two_peers_smoke(sfu_server: ServerProcess) -> None:
    a = await join(sfu_server, "smoke", "alice", 440)
    b = await join(sfu_server, "smoke", "bob", 660)
    try:
        assert await a.client.wait_for_consumers(2, timeout=15)
        assert await b.client.wait_for_consumers(2, timeout=15)
        sink = a.sink_for("bob", "video")
        ok = await sink.wait_frames(10, timeout=20)
        print(sfu_server.health())
        assert ok, f"frames={sink.frames}"
    finally:
        await a.client.close()
        await b.client.close()
