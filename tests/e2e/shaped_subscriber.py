"""A subscriber bot for tests, run inside a client namespace (tests/e2e/netns.py):

    python -m tests.e2e.shaped_subscriber --url ws://198.18.1.1:PORT --room R
        --peer P --ice-address 198.18.1.2 --seconds 20

It joins, consumes everything, decodes the video for ``--seconds``, and prints
one JSON line: frames decoded, and the server's stats of its video consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from sfu.client import RemoteConsumer, SfuClient, TrackSink


async def run(args: argparse.Namespace) -> dict[str, object]:
    client = SfuClient(
        args.url, args.room, args.peer, display_name=args.peer, ice_addresses=[args.ice_address]
    )
    sinks: dict[str, TrackSink] = {}

    def on_consumer(remote: RemoteConsumer) -> None:
        sinks[remote.id] = TrackSink(remote.track).start()

    client.on("newconsumer", on_consumer)
    await client.join()
    try:
        if not await client.wait_for_consumers(1, timeout=20):
            return {"error": "no consumer"}
        video = next(r for r in client.consumers.values() if r.kind == "video")
        sink = sinks[video.id]
        await sink.wait_frames(1, timeout=20)
        start = sink.frames
        await asyncio.sleep(args.seconds)  # the measuring window itself
        stats = (await client.request("getConsumerStats", {"consumerId": video.id}))[0]
        return {"frames": sink.frames - start, "stats": stats}
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--ice-address", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
