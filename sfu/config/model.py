"""Typed configuration, loaded from a TOML file.

Every setting has a default, so the server starts with no file at all (bound to
127.0.0.1). A file only has to name what it changes; see ``config.example.toml``.

Anything wrong in the file stops start-up with a :class:`~sfu.errors.ConfigError`
whose message names the file and the full key path, e.g.::

    config.toml: media.rtc_min_port: expected an integer in 1..65535, got "abc"
    config.toml: unknown key "http.prot"
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sfu.errors import ConfigError

__all__ = [
    "DEFAULT_MEDIA_CODECS",
    "LOG_LEVELS",
    "Config",
    "HttpConfig",
    "LogConfig",
    "MediaCodecConfig",
    "MediaConfig",
    "RouterConfig",
    "SignalingConfig",
    "config_from_dict",
    "load_config",
]

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
MEDIA_KINDS: tuple[str, ...] = ("audio", "video")


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP/WebSocket signalling listener."""

    listen_ip: str = "127.0.0.1"
    port: int = 3000
    max_request_bytes: int = 65536


@dataclass(frozen=True)
class MediaConfig:
    """The UDP sockets that carry RTP/RTCP (ICE + DTLS + SRTP)."""

    listen_ip: str = "127.0.0.1"
    # The IP written into ICE candidates; None means the same as listen_ip.
    announced_ip: str | None = None
    rtc_min_port: int = 40000
    rtc_max_port: int = 49999
    # Seconds without a valid ICE check or media from the client before a
    # connected transport is closed (and its peer told).
    ice_timeout: float = 30.0
    # Single-port mode: every transport on this one UDP port (0: off, a port
    # per transport from the range above).
    udp_port: int = 0
    # ICE over TCP (passive candidates, RFC 6544): a fallback for networks
    # that block UDP. Each transport also listens on TCP (the same port
    # number where free; in single-port mode, TCP udp_port).
    enable_tcp: bool = False

    @property
    def announced_address(self) -> str:
        """The address clients are told to send media to."""
        return self.announced_ip or self.listen_ip


@dataclass(frozen=True)
class WorkersConfig:
    """Media worker processes (one per core, as mediasoup)."""

    # How many; 0 means one per CPU.
    count: int = 0
    # A room's router takes this many peers before the room spreads to a
    # router on another worker (joined by pipe transports); 0 never spreads.
    max_peers_per_router: int = 50

    @property
    def resolved_count(self) -> int:
        return self.count or os.cpu_count() or 1


@dataclass(frozen=True)
class MediaCodecConfig:
    """One entry of the router's media codecs (a mediasoup RtpCodecCapability)."""

    kind: str
    mime_type: str
    clock_rate: int
    channels: int | None = None
    parameters: dict[str, str | int] = field(default_factory=dict, hash=False)
    preferred_payload_type: int | None = None

    def to_mediasoup(self) -> dict[str, Any]:
        """The codec in mediasoup's camelCase shape; unset fields are left out."""
        codec: dict[str, Any] = {
            "kind": self.kind,
            "mimeType": self.mime_type,
            "clockRate": self.clock_rate,
        }
        if self.channels is not None:
            codec["channels"] = self.channels
        if self.parameters:
            codec["parameters"] = dict(self.parameters)
        if self.preferred_payload_type is not None:
            codec["preferredPayloadType"] = self.preferred_payload_type
        return codec


# RTX is added by the router for every video codec, so it is not listed here.
DEFAULT_MEDIA_CODECS: tuple[MediaCodecConfig, ...] = (
    MediaCodecConfig(kind="audio", mime_type="audio/opus", clock_rate=48000, channels=2),
    MediaCodecConfig(kind="video", mime_type="video/VP8", clock_rate=90000),
    MediaCodecConfig(
        kind="video", mime_type="video/VP9", clock_rate=90000, parameters={"profile-id": 2}
    ),
    MediaCodecConfig(
        kind="video",
        mime_type="video/H264",
        clock_rate=90000,
        parameters={
            "packetization-mode": 1,
            "profile-level-id": "4d0032",
            "level-asymmetry-allowed": 1,
        },
    ),
    MediaCodecConfig(
        kind="video",
        mime_type="video/H264",
        clock_rate=90000,
        parameters={
            "packetization-mode": 1,
            "profile-level-id": "42e01f",
            "level-asymmetry-allowed": 1,
        },
    ),
)


@dataclass(frozen=True)
class RouterConfig:
    """What every room's router is created with."""

    media_codecs: tuple[MediaCodecConfig, ...] = DEFAULT_MEDIA_CODECS

    def mediasoup_media_codecs(self) -> list[dict[str, Any]]:
        """``mediaCodecs`` for ``worker.createRouter``."""
        return [codec.to_mediasoup() for codec in self.media_codecs]


@dataclass(frozen=True)
class SignalingConfig:
    """The protoo-style request/response signalling."""

    # Seconds the server waits for a client to answer a server-initiated request
    # (e.g. "newConsumer") before giving up on it.
    consumer_request_timeout: float = 10.0
    # Seconds a peer whose WebSocket dropped is kept (media flowing) so that it
    # can resume its session; after that it is closed everywhere.
    peer_grace_period: float = 10.0
    # Seconds given to peers to leave on SIGTERM before the server exits.
    shutdown_timeout: float = 5.0


@dataclass(frozen=True)
class LimitsConfig:
    """Caps that keep one client from exhausting the server. Over a cap the
    request gets a clear error (protoo errorCode 429 or 503)."""

    max_rooms: int = 1000
    max_peers_per_room: int = 100
    max_transports_per_peer: int = 4
    max_producers_per_peer: int = 8
    requests_per_second: float = 50.0
    request_burst: int = 100


@dataclass(frozen=True)
class IceServerConfig:
    """A STUN/TURN server handed to clients (RTCIceServer). With ``shared_secret``
    (coturn's TURN REST API, ``use-auth-secret``), each client gets a
    time-limited username and credential instead of static ones."""

    urls: tuple[str, ...]
    username: str = ""
    credential: str = ""
    shared_secret: str = ""
    ttl: int = 86400


@dataclass(frozen=True)
class TlsConfig:
    """HTTPS/WSS for the signalling port. Both empty: plain HTTP (fine on
    localhost, which browsers treat as a secure context)."""

    cert: str = ""
    key: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    # "text" for people, "json" for log pipelines (one object a line, with the
    # room, peer and transport ids when there are some).
    format: str = "text"


@dataclass(frozen=True)
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    signaling: SignalingConfig = field(default_factory=SignalingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    ice_servers: tuple[IceServerConfig, ...] = ()


# --------------------------------------------------------------------------- loading

# Environment variables that override the file, so one image runs anywhere.
ENVIRONMENT_OVERRIDES: dict[str, tuple[str, ...]] = {
    "SFU_HTTP_PORT": ("http.port",),
    # Where every socket binds: signalling, media, ICE host candidates.
    "SFU_LISTEN_IP": ("http.listen_ip", "media.listen_ip"),
    "SFU_ANNOUNCED_IP": ("media.announced_ip",),
    "SFU_UDP_PORT": ("media.udp_port",),
    "SFU_WORKERS": ("workers.count",),
    "SFU_TLS_CERT": ("tls.cert",),
    "SFU_TLS_KEY": ("tls.key",),
}
_INTEGER_KEYS = {"http.port", "media.udp_port", "workers.count"}


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with dotted keys set from strings (environment or command line).
    Integers are converted when they look like one; validation comes after."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted, text in overrides.items():
        section, _, name = dotted.partition(".")
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            continue  # the loader reports the bad section
        value: Any = text
        if dotted in _INTEGER_KEYS and text.strip().isdigit():
            value = int(text)
        table[name] = value
    return merged


def environment_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        key: environ[variable]
        for variable, keys in ENVIRONMENT_OVERRIDES.items()
        if variable in environ
        for key in keys
    }


def load_config(
    path: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Load and validate a TOML file (``None``: the built-in defaults), then
    the SFU_* environment variables, then ``overrides`` (command-line flags)."""
    layered = {**environment_overrides(environ or {}), **(overrides or {})}
    if path is None:
        return (
            config_from_dict(apply_overrides({}, layered), source="settings")
            if layered
            else Config()
        )
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a file") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not valid UTF-8: {e.reason} at byte {e.start}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None
    return config_from_dict(apply_overrides(data, layered), source=source)


def config_from_dict(data: Mapping[str, Any], source: str | None = None) -> Config:
    """Validate already-parsed TOML data. ``source`` (a file name) prefixes error messages."""
    return _Loader(source).config(data)


def _show(value: object) -> str:
    """A value as it would look in the TOML file, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return repr(value)


class _Loader:
    def __init__(self, source: str | None) -> None:
        self._prefix = f"{source}: " if source else ""

    # -- errors and generic checks

    def _fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self._prefix}{key}: {message}")

    def _table(self, value: object, key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self._fail(key or "(top level)", f"expected a table, got {_show(value)}")
        for name in value:
            if name not in allowed:
                full = f"{key}.{name}" if key else str(name)
                raise ConfigError(
                    f"{self._prefix}unknown key {json.dumps(full)}"
                    f" (expected one of: {', '.join(allowed)})"
                )
        return value

    def _int(self, value: object, key: str, lo: int, hi: int | None = None) -> int:
        want = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
        # bool is an int subclass: `port = true` must not mean port 1.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, f"expected {want}, got {_show(value)}")
        if value < lo or (hi is not None and value > hi):
            raise self._fail(key, f"expected {want}, got {_show(value)}")
        return value

    def _positive_number(self, value: object, key: str) -> float:
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise self._fail(key, f"expected a number > 0, got {_show(value)}")
        return float(value)

    def _bool(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self._fail(key, f"expected true or false, got {_show(value)}")
        return value

    def _str(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            raise self._fail(key, f"expected a string, got {_show(value)}")
        return value

    def _ip(self, value: object, key: str) -> str:
        text = self._str(value, key)
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise self._fail(key, f"expected an IPv4 or IPv6 address, got {_show(value)}") from None

    # -- sections

    def config(self, data: Mapping[str, Any]) -> Config:
        top = self._table(
            data,
            "",
            (
                "http",
                "media",
                "workers",
                "router",
                "signaling",
                "limits",
                "tls",
                "log",
                "ice_servers",
            ),
        )
        return Config(
            http=self._http(top.get("http", {})),
            media=self._media(top.get("media", {})),
            workers=self._workers(top.get("workers", {})),
            router=self._router(top.get("router", {})),
            signaling=self._signaling(top.get("signaling", {})),
            limits=self._limits(top.get("limits", {})),
            tls=self._tls(top.get("tls", {})),
            log=self._log(top.get("log", {})),
            ice_servers=self._ice_servers(top.get("ice_servers", [])),
        )

    def _http(self, value: object) -> HttpConfig:
        t = self._table(value, "http", ("listen_ip", "port", "max_request_bytes"))
        d = HttpConfig()
        return HttpConfig(
            listen_ip=self._ip(t.get("listen_ip", d.listen_ip), "http.listen_ip"),
            port=self._int(t.get("port", d.port), "http.port", 1, 65535),
            max_request_bytes=self._int(
                t.get("max_request_bytes", d.max_request_bytes), "http.max_request_bytes", 1
            ),
        )

    def _media(self, value: object) -> MediaConfig:
        t = self._table(
            value,
            "media",
            (
                "listen_ip",
                "announced_ip",
                "rtc_min_port",
                "rtc_max_port",
                "ice_timeout",
                "udp_port",
                "enable_tcp",
            ),
        )
        d = MediaConfig()
        listen_ip = self._ip(t.get("listen_ip", d.listen_ip), "media.listen_ip")
        announced_ip: str | None = None
        raw_announced = t.get("announced_ip", "")
        if raw_announced == "auto":
            raw_announced = detect_announced_ip()
            if raw_announced is None:
                raise self._fail(
                    "media.announced_ip",
                    '"auto" found no non-loopback IPv4 address on this machine; give the IP',
                )
        if raw_announced != "":
            announced_ip = self._ip(raw_announced, "media.announced_ip")
            if ipaddress.ip_address(announced_ip).is_unspecified:
                raise self._fail(
                    "media.announced_ip",
                    f"{_show(announced_ip)} cannot be announced to clients;"
                    " give the IP clients should send media to",
                )
        elif ipaddress.ip_address(listen_ip).is_unspecified:
            raise self._fail(
                "media.announced_ip",
                f"must be set when media.listen_ip is {_show(listen_ip)}:"
                " clients cannot send media to an unspecified address",
            )
        rtc_min_port = self._int(
            t.get("rtc_min_port", d.rtc_min_port), "media.rtc_min_port", 1, 65535
        )
        rtc_max_port = self._int(
            t.get("rtc_max_port", d.rtc_max_port), "media.rtc_max_port", 1, 65535
        )
        if rtc_min_port > rtc_max_port:
            raise self._fail(
                "media.rtc_min_port",
                f"{rtc_min_port} is greater than media.rtc_max_port ({rtc_max_port})",
            )
        return MediaConfig(
            listen_ip=listen_ip,
            announced_ip=announced_ip,
            rtc_min_port=rtc_min_port,
            rtc_max_port=rtc_max_port,
            ice_timeout=self._positive_number(
                t.get("ice_timeout", d.ice_timeout), "media.ice_timeout"
            ),
            udp_port=self._int(t.get("udp_port", d.udp_port), "media.udp_port", 0, 65535),
            enable_tcp=self._bool(t.get("enable_tcp", d.enable_tcp), "media.enable_tcp"),
        )

    def _workers(self, value: object) -> WorkersConfig:
        t = self._table(value, "workers", ("count", "max_peers_per_router"))
        d = WorkersConfig()
        return WorkersConfig(
            count=self._int(t.get("count", d.count), "workers.count", 0, 256),
            max_peers_per_router=self._int(
                t.get("max_peers_per_router", d.max_peers_per_router),
                "workers.max_peers_per_router",
                0,
            ),
        )

    def _router(self, value: object) -> RouterConfig:
        t = self._table(value, "router", ("media_codecs",))
        if "media_codecs" not in t:
            return RouterConfig()
        entries = t["media_codecs"]
        if not isinstance(entries, list):
            raise self._fail(
                "router.media_codecs",
                f"expected an array of tables ([[router.media_codecs]]), got {_show(entries)}",
            )
        if not entries:
            raise self._fail("router.media_codecs", "must list at least one codec")
        return RouterConfig(
            media_codecs=tuple(
                self._codec(entry, f"router.media_codecs[{i}]") for i, entry in enumerate(entries)
            )
        )

    def _codec(self, value: object, key: str) -> MediaCodecConfig:
        t = self._table(
            value,
            key,
            (
                "kind",
                "mime_type",
                "clock_rate",
                "channels",
                "parameters",
                "preferred_payload_type",
            ),
        )
        for required in ("kind", "mime_type", "clock_rate"):
            if required not in t:
                raise self._fail(f"{key}.{required}", "missing (required)")
        kind = self._str(t["kind"], f"{key}.kind")
        if kind not in MEDIA_KINDS:
            raise self._fail(f"{key}.kind", f'expected "audio" or "video", got {_show(kind)}')
        mime_type = self._str(t["mime_type"], f"{key}.mime_type")
        prefix, slash, subtype = mime_type.partition("/")
        if not slash or not subtype or "/" in subtype or prefix.lower() != kind:
            example = "audio/opus" if kind == "audio" else "video/VP8"
            raise self._fail(
                f"{key}.mime_type",
                f'expected "{kind}/<codec>" (e.g. "{example}"), got {_show(mime_type)}',
            )
        if subtype.lower() == "rtx":
            raise self._fail(
                f"{key}.mime_type",
                "RTX is added by the router for every video codec; do not list it",
            )
        clock_rate = self._int(t["clock_rate"], f"{key}.clock_rate", 1)
        channels: int | None = None
        if "channels" in t:
            if kind != "audio":
                raise self._fail(f"{key}.channels", "only audio codecs have channels")
            channels = self._int(t["channels"], f"{key}.channels", 1, 8)
        parameters: dict[str, str | int] = {}
        if "parameters" in t:
            raw = t["parameters"]
            if not isinstance(raw, Mapping):
                raise self._fail(f"{key}.parameters", f"expected a table, got {_show(raw)}")
            for name, param in raw.items():
                if isinstance(param, bool) or not isinstance(param, str | int):
                    raise self._fail(
                        f"{key}.parameters.{name}",
                        f"expected a string or an integer, got {_show(param)}",
                    )
                parameters[str(name)] = param
        preferred_payload_type: int | None = None
        if "preferred_payload_type" in t:
            preferred_payload_type = self._int(
                t["preferred_payload_type"], f"{key}.preferred_payload_type", 0, 127
            )
        return MediaCodecConfig(
            kind=kind,
            mime_type=mime_type,
            clock_rate=clock_rate,
            channels=channels,
            parameters=parameters,
            preferred_payload_type=preferred_payload_type,
        )

    def _signaling(self, value: object) -> SignalingConfig:
        names = ("consumer_request_timeout", "peer_grace_period", "shutdown_timeout")
        t = self._table(value, "signaling", names)
        d = SignalingConfig()
        return SignalingConfig(
            **{
                name: self._positive_number(t.get(name, getattr(d, name)), f"signaling.{name}")
                for name in names
            }
        )

    def _limits(self, value: object) -> LimitsConfig:
        ints = (
            "max_rooms",
            "max_peers_per_room",
            "max_transports_per_peer",
            "max_producers_per_peer",
            "request_burst",
        )
        t = self._table(value, "limits", (*ints, "requests_per_second"))
        d = LimitsConfig()
        values: dict[str, Any] = {
            name: self._int(t.get(name, getattr(d, name)), f"limits.{name}", 1) for name in ints
        }
        values["requests_per_second"] = self._positive_number(
            t.get("requests_per_second", d.requests_per_second), "limits.requests_per_second"
        )
        return LimitsConfig(**values)

    def _ice_servers(self, value: object) -> tuple[IceServerConfig, ...]:
        if not isinstance(value, list):
            raise self._fail("ice_servers", "expected a list of [[ice_servers]] tables")
        servers = []
        for index, entry in enumerate(value):
            key = f"ice_servers[{index}]"
            t = self._table(entry, key, ("urls", "username", "credential", "shared_secret", "ttl"))
            raw_urls = t.get("urls")
            urls = [raw_urls] if isinstance(raw_urls, str) else raw_urls
            if (
                not isinstance(urls, list)
                or not urls
                or not all(
                    isinstance(u, str) and u.split(":", 1)[0] in ("stun", "stuns", "turn", "turns")
                    for u in urls
                )
            ):
                raise self._fail(f"{key}.urls", 'expected "turn:HOST:PORT" or "stun:..." URLs')
            server = IceServerConfig(
                urls=tuple(urls),
                username=self._str(t.get("username", ""), f"{key}.username"),
                credential=self._str(t.get("credential", ""), f"{key}.credential"),
                shared_secret=self._str(t.get("shared_secret", ""), f"{key}.shared_secret"),
                ttl=self._int(t.get("ttl", 86400), f"{key}.ttl", 60),
            )
            is_turn = any(u.startswith("turn") for u in urls)
            if is_turn and not server.shared_secret and not (server.username and server.credential):
                raise self._fail(
                    f"{key}.username",
                    "TURN needs username and credential, or shared_secret (coturn REST API)",
                )
            servers.append(server)
        return tuple(servers)

    def _tls(self, value: object) -> TlsConfig:
        t = self._table(value, "tls", ("cert", "key"))
        cert = self._str(t.get("cert", ""), "tls.cert")
        key = self._str(t.get("key", ""), "tls.key")
        if bool(cert) != bool(key):
            missing = "tls.key" if cert else "tls.cert"
            raise self._fail(missing, "must be set too: HTTPS needs both a certificate and its key")
        if cert:
            check_tls_files(cert, key, self._fail)
        return TlsConfig(cert=cert, key=key)

    def _log(self, value: object) -> LogConfig:
        t = self._table(value, "log", ("level", "format"))
        level = self._str(t.get("level", LogConfig.level), "log.level")
        if level.lower() not in LOG_LEVELS:
            raise self._fail(
                "log.level",
                f"expected one of {', '.join(json.dumps(x) for x in LOG_LEVELS)},"
                f" got {_show(level)}",
            )
        log_format = self._str(t.get("format", LogConfig.format), "log.format")
        if log_format not in ("text", "json"):
            raise self._fail("log.format", f'expected "text" or "json", got {_show(log_format)}')
        return LogConfig(level=level.lower(), format=log_format)


def detect_announced_ip() -> str | None:
    """This machine's first non-loopback, non-link-local IPv4 address (for
    ``announced_ip = "auto"``), read from the interfaces; nothing is sent."""
    import ifaddr

    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                address = ipaddress.ip_address(ip.ip)
                if not (address.is_loopback or address.is_link_local or address.is_unspecified):
                    return str(address)
    return None


def check_tls_files(cert: str, key: str, fail: Any) -> None:
    """Stop start-up with a clear message if the cert or key is missing,
    unreadable, not PEM, or the two do not match."""
    import ssl

    for name, path in (("tls.cert", cert), ("tls.key", key)):
        if not os.path.isfile(path):
            raise fail(name, f"{_show(path)}: no such file (`sfu certs --host NAME` makes a pair)")
        if not os.access(path, os.R_OK):
            raise fail(name, f"{_show(path)}: not readable by this user")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            raise fail("tls.key", f"{_show(key)} is not the key of {_show(cert)}") from None
        raise fail("tls.cert", f"cannot load {_show(cert)} with {_show(key)}: {error}") from None
