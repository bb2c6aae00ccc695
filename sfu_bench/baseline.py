"""The baseline: how people relay media with aiortc today.

``python -m sfu_bench.baseline --port P`` serves, on 127.0.0.1:

- ``POST /publish {room, sdp, type}``: an ``RTCPeerConnection`` receives the
  publisher's tracks (aiortc decodes them);
- ``POST /subscribe {room, sdp, type}``: a new ``RTCPeerConnection`` per
  subscriber sends ``MediaRelay().subscribe(track)`` of each published track:
  every subscriber's sender encodes the decoded frames again (VP8, Opus);
- ``GET /health``: ``{rtpPacketsReceived, rtpPacketsSent, peers, process}``
  from aiortc's stats, the same keys as the SFU's ``/health``.

This is the shape of aiortc's own examples (``examples/server``) with
``aiortc.contrib.media.MediaRelay``; the benchmark loads it with the same
publisher clip and counting subscribers as the SFU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from sfu.aiortc_adapter import set_host_addresses

__all__ = ["RelayServer", "main"]

logger = logging.getLogger("sfu_bench.baseline")

PUBLISHER_WAIT = 10.0


class RelayServer:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.sources: dict[str, dict[str, MediaStreamTrack]] = {}
        self.published: dict[str, asyncio.Event] = {}
        self.pcs: set[RTCPeerConnection] = set()
        self.app = web.Application()
        self.app.router.add_post("/publish", self.publish)
        self.app.router.add_post("/subscribe", self.subscribe)
        self.app.router.add_get("/health", self.health)

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.pcs.discard(pc)
                await pc.close()

        return pc

    async def _answer(self, pc: RTCPeerConnection) -> web.Response:
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def publish(self, request: web.Request) -> web.Response:
        body = await request.json()
        room = str(body["room"])
        pc = self._new_pc()
        tracks: dict[str, MediaStreamTrack] = {}

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            tracks[track.kind] = track

        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        response = await self._answer(pc)
        self.sources[room] = tracks
        self.published.setdefault(room, asyncio.Event()).set()
        return response

    async def subscribe(self, request: web.Request) -> web.Response:
        body = await request.json()
        room = str(body["room"])
        event = self.published.setdefault(room, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), PUBLISHER_WAIT)
        except TimeoutError:
            raise web.HTTPNotFound(text=f"nobody publishes in room {room}") from None
        pc = self._new_pc()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        for track in self.sources[room].values():
            pc.addTrack(self.relay.subscribe(track))
        return await self._answer(pc)

    async def health(self, request: web.Request) -> web.Response:
        received = sent = 0
        for pc in list(self.pcs):
            with contextlib.suppress(Exception):
                for stats in (await pc.getStats()).values():
                    if stats.type == "inbound-rtp":
                        received += stats.packetsReceived
                    elif stats.type == "outbound-rtp":
                        sent += stats.packetsSent
        process: dict[str, int] = {"tasks": len(asyncio.all_tasks())}
        with contextlib.suppress(OSError):
            process["fds"] = len(os.listdir("/proc/self/fd"))
        return web.json_response(
            {
                "status": "ok",
                "peers": len(self.pcs),
                "rtpPacketsReceived": received,
                "rtpPacketsSent": sent,
                "droppedPackets": {},
                "process": process,
            }
        )

    async def close(self) -> None:
        pcs, self.pcs = list(self.pcs), set()
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)


async def serve(port: int) -> None:
    set_host_addresses(["127.0.0.1"])
    server = RelayServer()
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.warning("MediaRelay baseline on http://127.0.0.1:%d", port)
    try:
        await stop.wait()
    finally:
        await server.close()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sfu_bench.baseline",
        description="The aiortc MediaRelay relay that `sfu bench` compares the SFU with (127.0.0.1 only).",
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
