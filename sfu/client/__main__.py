"""A bot that joins a room: ``python -m sfu.client --url ws://127.0.0.1:3000 --room demo``.

It sends a tone and a test pattern, consumes everybody else, and prints one
line per event (newpeer, newconsumer, consumerclosed, reconnecting, ...).
Stops after ``--duration`` seconds, on Ctrl-C, or when the connection is lost
for good (``fatal``, or a server that cannot resume sessions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .client import SfuClient
from .consuming import RemoteConsumer
from .media import PatternVideoTrack, ToneAudioTrack, TrackSink


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sfu.client", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--url", default="ws://127.0.0.1:3000", help="server WebSocket URL")
    parser.add_argument("--room", required=True, help="room id")
    parser.add_argument("--peer", default=None, help="peer id (default: random)")
    parser.add_argument("--name", default="bot", help="display name")
    parser.add_argument("--tone", type=float, default=440.0, help="tone frequency in Hz")
    parser.add_argument("--no-audio", action="store_true", help="do not send audio")
    parser.add_argument("--no-video", action="store_true", help="do not send video")
    parser.add_argument(
        "--ice-address",
        action="append",
        default=None,
        help="gather ICE candidates only on this address (repeatable), e.g. 127.0.0.1",
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="seconds to stay (0: until Ctrl-C)"
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    client = SfuClient(
        args.url, args.room, args.peer, display_name=args.name, ice_addresses=args.ice_address
    )
    sinks: list[tuple[RemoteConsumer, TrackSink]] = []

    def say(*parts: object) -> None:
        print(*parts, flush=True)

    def on_consumer(remote: RemoteConsumer) -> None:
        sinks.append((remote, TrackSink(remote.track).start()))
        say("newconsumer", remote.peer_id, remote.kind, remote.id)

    client.on("newconsumer", on_consumer)
    client.on("newpeer", lambda peer: say("newpeer", peer.get("id")))
    client.on("peerclosed", lambda peer_id: say("peerclosed", peer_id))
    client.on("consumerclosed", lambda consumer_id: say("consumerclosed", consumer_id))
    client.on("activespeaker", lambda data: say("activespeaker", data.get("peerId")))
    client.on("reconnecting", lambda attempt: say("reconnecting", attempt))
    client.on(
        "reconnected", lambda resumed: say("reconnected", "resumed" if resumed else "joined afresh")
    )
    client.on("producersreplaced", lambda ids: say("producersreplaced", ids))
    stop = asyncio.Event()

    def on_fatal(reason: str) -> None:
        say("fatal", reason)
        stop.set()

    def on_disconnected() -> None:
        say("disconnected")
        if not client.reconnecting:
            stop.set()

    client.on("fatal", on_fatal)
    client.on("disconnected", on_disconnected)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    peers = await client.join()
    say("joined", client.peer_id, "peers:", " ".join(p["id"] for p in peers) or "-")
    if not args.no_audio:
        say("producer audio", await client.produce(ToneAudioTrack(args.tone)))
    if not args.no_video:
        say("producer video", await client.produce(PatternVideoTrack()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.duration or None)
    for remote, sink in sinks:
        # What this bot received, for people and for tests to read.
        say("received", remote.peer_id, remote.kind, "frames", sink.frames)
        sink.stop()
    await client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
