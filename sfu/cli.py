"""The ``sfu`` command line.

``sfu [--config PATH] [--log-level LEVEL]`` starts the server; it is short for
``sfu run ...``. Other subcommands (``sfu certs``, ``sfu bench``) hang off the same
parser later.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable

from sfu import __version__
from sfu.config import LOG_LEVELS, Config, LogConfig, load_config
from sfu.errors import ConfigError

__all__ = ["main"]

log = logging.getLogger("sfu.cli")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

DESCRIPTION = """\
sfu is a Selective Forwarding Unit: a WebRTC media server for rooms and voice
channels. Each participant sends their audio and video to the server once, and
the server forwards it to everyone else in the room. Clients talk to it over a
WebSocket (signalling, on the HTTP port) and send media over UDP.
"""

EPILOG = """\
configuration:
  Every setting has a built-in default, so `sfu` with no options starts a
  server on 127.0.0.1 (HTTP/WebSocket on port 3000, media on UDP 40000-49999)
  that works for clients on this machine. To change anything, write a TOML
  file that names only the settings you change and pass it with --config;
  config.example.toml in the source tree lists every setting with its default
  and explains it. A bad setting stops start-up with a message naming the key.

  For clients on other machines, set [media] announced_ip to this machine's
  LAN or public IP (and listen_ip to "0.0.0.0" or that IP).

examples:
  sfu                                   start with the built-in defaults
  sfu --config config.toml              start with settings from config.toml
  sfu --config config.toml --log-level debug
  sfu run --config config.toml          the same as `sfu --config config.toml`
"""


def _add_run_options(parser: argparse.ArgumentParser, *, suppress_defaults: bool) -> None:
    # The run options live on the top-level parser (so `sfu --config x` works)
    # and on the `run` subparser. On the subparser their defaults are suppressed,
    # or they would overwrite values given before the subcommand.
    default: object = argparse.SUPPRESS if suppress_defaults else None
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=default,
        help="TOML configuration file (default: none, use the built-in defaults)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=default,
        help="log level; overrides [log] level from the configuration file (default: info)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfu",
        usage="%(prog)s [-h] [--version] [--config PATH] [--log-level LEVEL]\n"
        "       %(prog)s COMMAND [options]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_run_options(parser, suppress_defaults=False)
    parser.set_defaults(handler=_cmd_run)

    commands = parser.add_subparsers(
        title="commands",
        dest="command",
        metavar="COMMAND",
        description="With no command, `sfu` runs the server (the same as `sfu run`).",
    )
    run = commands.add_parser(
        "run",
        help="start the server (the default)",
        description="Start the SFU server and run it until interrupted (Ctrl-C).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_options(run, suppress_defaults=True)
    run.set_defaults(handler=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sfu`` command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as e:
        print(f"sfu: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.log_level is not None:
        config = dataclasses.replace(config, log=LogConfig(level=args.log_level))
    _configure_logging(config)
    log.info(
        "sfu %s starting: http %s:%d, media %s (announced %s) udp %d-%d",
        __version__,
        config.http.listen_ip,
        config.http.port,
        config.media.listen_ip,
        config.media.announced_address,
        config.media.rtc_min_port,
        config.media.rtc_max_port,
    )
    # Imported here so that the CLI (and its tests) load without the server stack.
    from sfu.server import run_server

    try:
        asyncio.run(run_server(config))
    except OSError as e:
        # Typically a port already in use or an address not on this machine.
        log.debug("server failed", exc_info=True)
        print(f"sfu: {e}", file=sys.stderr)
        return 1
    return 0


def _configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=getattr(logging, config.log.level.upper()),
        format=LOG_FORMAT,
    )
