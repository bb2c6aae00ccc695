"""The ``sfu`` command line.

``sfu [--config PATH] [--log-level LEVEL]`` starts the server; it is short for
``sfu run ...``. ``sfu token ...`` prints an access token signed with a
configured API key (docs/auth.md). ``sfu bench ...`` runs the benchmark: the separate package
:mod:`sfu_bench` (installed beside ``sfu`` from this repository), imported only
for that command. Other subcommands (``sfu certs``) hang off the same
parser later.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import sys
from collections.abc import Callable

from sfu import __version__
from sfu.config import LOG_LEVELS, Config, load_config
from sfu.errors import ConfigError

__all__ = ["main"]

log = logging.getLogger("sfu.cli")


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
  sfu token --room R --identity alice   an access token for room R (see docs/auth.md)
  sfu bench --quick                     benchmark the server (see `sfu bench --help`)
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
    for flag, key, help_text in RUN_FLAGS:
        parser.add_argument(flag, metavar="VALUE", default=default, dest=key, help=help_text)


# Flags that override the configuration file and the SFU_* environment.
RUN_FLAGS = (
    ("--listen-ip", "listen_ip", "bind signalling and media here (env SFU_LISTEN_IP)"),
    ("--port", "http_port", "HTTP/WebSocket port (env SFU_HTTP_PORT)"),
    (
        "--announced-ip",
        "announced_ip",
        'IP written into ICE candidates, or "auto" to detect it (env SFU_ANNOUNCED_IP)',
    ),
    ("--udp-port", "udp_port", "single-port mode: all media on this UDP port (env SFU_UDP_PORT)"),
)
_FLAG_KEYS = {
    "listen_ip": ("http.listen_ip", "media.listen_ip"),
    "http_port": ("http.port",),
    "announced_ip": ("media.announced_ip",),
    "udp_port": ("media.udp_port",),
}


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

    certs = commands.add_parser(
        "certs",
        help="write a self-signed certificate and key for HTTPS",
        description="Write a self-signed certificate and key for HOST into a folder "
        "(default certs/), for [tls] cert/key. Browsers will warn about it: use a "
        "real certificate (e.g. Let's Encrypt) for public deployments.",
    )
    certs.add_argument("--host", required=True, help="host name (and SAN) of the certificate")
    certs.add_argument("--out", default="certs", help="folder to write cert.pem and key.pem into")
    certs.add_argument("--days", type=int, default=365, help="validity in days")
    certs.set_defaults(handler=_cmd_certs)

    _add_token_command(commands)
    _add_compose_command(commands)

    bench = commands.add_parser(
        "bench",
        help="run the benchmark (see `sfu bench --help`)",
        add_help=False,
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(handler=_cmd_bench)
    return parser


def _add_token_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token",
        help="print an access token for a room (a LiveKit access token)",
        description="Print a LiveKit access token (JWT, HS256) for joining ROOM as IDENTITY, "
        "signed with an API key of the configuration ([auth] keys or SFU_API_KEY / "
        "SFU_API_SECRET). Clients pass it as access_token on the WebSocket URL.",
    )
    token.add_argument(
        "-c", "--config", metavar="PATH", default=argparse.SUPPRESS, help="TOML configuration file"
    )
    token.add_argument("--room", required=True, help="the room it admits to")
    token.add_argument("--identity", required=True, help="the participant's identity: its peerId")
    token.add_argument("--name", default="", help="display name")
    token.add_argument(
        "--ttl", default="6h", type=_duration, help="validity: 90s, 30m, 6h, 2d (default: 6h)"
    )
    token.add_argument("--key", help="which API key signs it (needed when several are set)")
    token.add_argument("--no-publish", action="store_true", help="may not publish media or data")
    token.add_argument("--no-subscribe", action="store_true", help="may not receive media")
    token.add_argument("--admin", action="store_true", help="roomAdmin for the room")
    token.set_defaults(handler=_cmd_token)


def _add_compose_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compose = commands.add_parser(
        "compose",
        help="render a room recording into one video (grid, mixed audio)",
        description="Render a room recording (its room.json) into one MP4: a grid of the "
        "video tracks as they came and went, the audio mixed, a progress bar.",
    )
    compose.add_argument("manifest", help="the recording's room.json")
    compose.add_argument("-o", "--output", required=True, help="the MP4 to write")
    compose.add_argument("--size", default="1280x720", type=_size, help="WxH (default 1280x720)")
    compose.add_argument("--fps", default=15, type=int, help="frames per second (default 15)")
    compose.set_defaults(handler=_cmd_compose)


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) < 64 or int(height) < 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1280x720")
    return int(width) & ~1, int(height) & ~1


def _cmd_compose(args: argparse.Namespace) -> int:
    from pathlib import Path

    # PyAV is loaded by this command only.
    from sfu.recorder.compose import compose

    manifest = Path(args.manifest)
    if not manifest.is_file():
        print(f"sfu: no such file: {manifest}", file=sys.stderr)
        return 2
    seconds = compose(manifest, Path(args.output), size=args.size, fps=args.fps)
    print(f"{args.output}: {seconds:.1f} s")
    return 0


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """Seconds in "90", "90s", "30m", "6h" or "2d"."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _DURATION_UNITS else (text, "s")
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m, 6h") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the validity must be positive")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sfu`` command; returns the process exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["bench"]:
        try:
            return _run_bench(arguments[1:])
        except KeyboardInterrupt:
            return 130
    args = build_parser().parse_args(arguments)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as e:
        print(f"sfu: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _cmd_run(args: argparse.Namespace) -> int:
    overrides = {
        key: str(value)
        for name, keys in _FLAG_KEYS.items()
        if (value := getattr(args, name, None)) is not None
        for key in keys
    }
    config = load_config(args.config, environ=os.environ, overrides=overrides)
    if args.log_level is not None:
        config = dataclasses.replace(
            config, log=dataclasses.replace(config.log, level=args.log_level)
        )
    _configure_logging(config)
    _warn_about_addresses(config)
    log.info(
        # The media ports come in the "SFU listening" line, once the workers are known.
        "sfu %s starting: http %s:%d, media %s (announced %s)",
        __version__,
        config.http.listen_ip,
        config.http.port,
        config.media.listen_ip,
        config.media.announced_address,
    )
    # Imported here so that the CLI (and its tests) load without the server stack.
    # (Whether the C extension is built, the media workers say: this process never loads it.)
    from sfu.server import run_server

    try:
        # [server] event_loop (SFU_EVENT_LOOP): uvloop unless "asyncio".
        if config.server.event_loop == "uvloop":
            import uvloop

            uvloop.run(run_server(config))
        else:
            asyncio.run(run_server(config))
    except OSError as e:
        # Typically a port already in use or an address not on this machine.
        log.debug("server failed", exc_info=True)
        print(f"sfu: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from sfu.auth.claims import VideoGrants
    from sfu.auth.tokens import mint_token

    keys = load_config(args.config, environ=os.environ).auth.secrets
    if not keys:
        raise ConfigError(
            "no API key is configured: set [auth] keys or SFU_API_KEY / SFU_API_SECRET"
        )
    if args.key is None and len(keys) > 1:
        raise ConfigError(
            f"several API keys are configured: choose one with --key ({', '.join(keys)})"
        )
    key = args.key if args.key is not None else next(iter(keys))
    if key not in keys:
        raise ConfigError(f"no API key {key!r} in the configuration")
    grants = VideoGrants(
        room=args.room,
        room_join=True,
        room_admin=args.admin,
        can_publish=not args.no_publish,
        can_publish_data=not args.no_publish,
        can_subscribe=not args.no_subscribe,
    )
    print(
        mint_token(
            key, keys[key], identity=args.identity, grants=grants, ttl=args.ttl, name=args.name
        )
    )
    return 0


def _warn_about_addresses(config: Config) -> None:
    """Loudly: the classic "works on localhost, fails elsewhere" mistakes."""
    announced = ipaddress.ip_address(config.media.announced_address)
    listen = ipaddress.ip_address(config.media.listen_ip)
    if announced.is_loopback and not listen.is_loopback:
        log.warning(
            "media.announced_ip is %s but media listens on %s: clients on other machines "
            "will be told to send media to a loopback address and will get no media. "
            "Set media.announced_ip (or SFU_ANNOUNCED_IP / --announced-ip) to this "
            'machine\'s LAN or public IP, or "auto".',
            announced,
            listen,
        )
    if announced.is_loopback and not ipaddress.ip_address(config.http.listen_ip).is_loopback:
        log.warning(
            "signalling is reachable from other machines (http.listen_ip %s) but media is "
            "announced on %s: only clients on this machine can get media",
            config.http.listen_ip,
            announced,
        )


def _cmd_certs(args: argparse.Namespace) -> int:
    from sfu.certs import write_self_signed

    cert, key = write_self_signed(args.host, args.out, days=args.days)
    print(f"wrote {cert} and {key} for {args.host}")
    print(f'set [tls] cert = "{cert}" and key = "{key}" (or SFU_TLS_CERT / SFU_TLS_KEY)')
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    # Reached only when options come before `bench` (`main` hands `sfu bench ...` over
    # directly: argparse's REMAINDER cannot take arguments that start with "-").
    return _run_bench(list(args.bench_args))


def _run_bench(arguments: list[str]) -> int:
    # Imported here, and only here: the server never imports the benchmark.
    try:
        from sfu_bench.cli import main as bench_main
    except ModuleNotFoundError as e:
        if e.name != "sfu_bench":
            raise
        print(
            "sfu bench: the benchmark (the sfu_bench package) is not installed; "
            "install this repository with `pip install -e .` (see the README's Benchmark)",
            file=sys.stderr,
        )
        return 2
    return int(bench_main(arguments, prog="sfu bench"))


def _configure_logging(config: Config) -> None:
    from sfu.logs import configure_logging

    configure_logging(config.log.level, config.log.format)
