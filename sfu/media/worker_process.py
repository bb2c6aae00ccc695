"""The worker process: ``python -m sfu.media.worker_process`` (started by the signaling process).

It owns one media Worker (its routers, transports and sockets) and serves the
channel on the inherited socket ``--fd``. It exits when the channel closes,
so a signaling process that dies never leaves workers behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from ..channel import Channel
from ..config import MediaConfig
from ..logs import configure_logging
from .fastpath import NATIVE_SEND
from .worker import Worker

logger = logging.getLogger(__name__)


async def serve(
    sock: socket.socket,
    settings: MediaConfig,
    started: Callable[[Worker], None] | None = None,
) -> None:
    """Serve the channel on ``sock`` until it closes. ``started`` gets the
    worker (tests running a worker in their own process reach its objects)."""
    channel = await Channel.over_socket(sock)
    worker = Worker(settings, channel)
    if started is not None:
        started(worker)
    try:
        await channel.run(worker.handle_request)
    finally:
        worker.close()


def media_settings(encoded: str) -> MediaConfig:
    fields: dict[str, Any] = json.loads(encoded)
    return MediaConfig(**fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sfu-worker")
    parser.add_argument("--fd", type=int, required=True, help="the channel's socket")
    parser.add_argument("--settings", required=True, help="MediaConfig as JSON")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    settings = media_settings(args.settings)
    if not NATIVE_SEND and settings.native_send:
        logger.warning(
            "sfu.media._native is not built (no C compiler at install?): consumers rewrite "
            "and send in Python, which costs 2-2.5x the CPU per forwarded packet"
        )
    # Ctrl-C in a terminal reaches the whole process group: the signaling
    # process shuts down gracefully and then closes the channel, which ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    coroutine = serve(sock, settings)
    if args.event_loop == "uvloop":
        import uvloop

        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
