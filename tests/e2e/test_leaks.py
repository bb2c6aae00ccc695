"""After 50 join/leave cycles of bots with media, the server is back at its baseline."""

from __future__ import annotations

import asyncio

from ..conftest import ServerProcess
from .helpers import Participant, join, wait_until

CYCLES = 50
BATCH = 5  # bots joining and leaving at once


def snapshot(server: ServerProcess) -> dict[str, int]:
    health = server.health()
    process = health["process"]
    workers = health["workers"]
    return {
        "fds": process["fds"],
        "tasks": process["tasks"],
        "rssMB": process["rssBytes"] // (1 << 20),
        # The media worker processes, where the sockets and media tasks live.
        "workerFds": sum(w["fds"] for w in workers),
        "workerTasks": sum(w["tasks"] for w in workers),
        "workerRssMB": sum(w["rssBytes"] for w in workers) // (1 << 20),
        "peers": health["peers"],
        "transports": health["transports"],
        "producers": health["producers"],
        "consumers": health["consumers"],
        "dataProducers": health["dataProducers"],
        "dataConsumers": health["dataConsumers"],
    }


async def run_batch(server: ServerProcess, watcher: Participant, start: int) -> None:
    bots = await asyncio.gather(
        # Bots only publish: decoding each other's video would load the test, not the server.
        *(
            join(server, "leaks", f"bot{start + i}", 300 + 10 * i, consume=False)
            for i in range(BATCH)
        )
    )
    closed_ids: list[str] = []
    watcher.client.on("consumerclosed", closed_ids.append)
    try:
        # Each bot chats too: a data producer of its own, a data consumer for the watcher.
        await asyncio.gather(
            *(bot.client.send_data(f"hi from {bot.client.peer_id}") for bot in bots)
        )
        assert await wait_until(lambda: len(watcher.client.data_consumers) == BATCH, timeout=40)
        health = server.health()
        assert health["dataProducers"] == BATCH
        assert health["dataConsumers"] == BATCH
        # Media really flows: the resident watcher decodes video from each bot.
        for bot in bots:
            # Generous bounds: the watcher sets up each consumer in turn (one
            # aiortc renegotiation each), slow on a loaded 2-core machine.
            assert await watcher.client.wait_for_consumers(2 * BATCH, timeout=40)
            consumer = watcher.consumer_for(bot.client.peer_id, "video")
            sink = watcher.sink_for(bot.client.peer_id, "video")
            assert await sink.wait_frames(1, timeout=30), (
                f"no video from {bot.client.peer_id}: sink ended {sink.ended} "
                f"(error {sink.error!r}), consumer closed {consumer.closed}, "
                f"closed by the server {consumer.id in closed_ids}"
            )
    finally:
        watcher.client.remove_listener("consumerclosed", closed_ids.append)
        await asyncio.gather(*(bot.client.close() for bot in bots))
    assert await wait_until(lambda: server.health()["peers"] == 1, timeout=10)
    # The watcher has closed its consumers of them before the next batch comes:
    # overlapping renegotiations are pymediasoup's business, not a server leak.
    assert await wait_until(lambda: not watcher.client.consumers, timeout=20)
    assert await wait_until(lambda: not watcher.client.data_consumers, timeout=20)


async def test_join_leave_cycles_return_to_baseline(sfu_server: ServerProcess) -> None:
    watcher = await join(sfu_server, "leaks", "watcher", 440, audio=False, video=False)
    try:
        await run_batch(sfu_server, watcher, 0)  # warm-up: imports, caches, codec state
        await asyncio.sleep(1.0)
        baseline = snapshot(sfu_server)
        for start in range(BATCH, CYCLES + BATCH, BATCH):
            await run_batch(sfu_server, watcher, start)
        await asyncio.sleep(1.5)  # closed transports' sockets and tasks wind down
        after = snapshot(sfu_server)
        print(f"\nafter {CYCLES} join/leave cycles: baseline {baseline} -> after {after}")
        for key in (
            "peers",
            "transports",
            "producers",
            "consumers",
            "dataProducers",
            "dataConsumers",
        ):
            assert after[key] == baseline[key], f"{key}: {baseline[key]} -> {after[key]}"
        assert after["fds"] <= baseline["fds"] + 2, "file descriptors leak"
        assert after["tasks"] <= baseline["tasks"] + 2, "asyncio tasks leak"
        assert after["workerFds"] <= baseline["workerFds"] + 2, "worker file descriptors leak"
        assert after["workerTasks"] <= baseline["workerTasks"] + 2, "worker asyncio tasks leak"
        assert after["rssMB"] <= baseline["rssMB"] + 25, "memory grows with every cycle"
        assert after["workerRssMB"] <= baseline["workerRssMB"] + 25, "worker memory grows"
    finally:
        await watcher.client.close()
