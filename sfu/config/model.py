"""The typed configuration: every key, its default and its constraints.

The sections are frozen dataclasses: built directly (``Config()``, the
defaults) they check nothing and cost nothing, and ``MediaConfig`` goes to each
media worker as JSON (``dataclasses.asdict`` there, ``MediaConfig(**fields)``
back). The constraints ride on the field types (``Annotated``) and are applied
by :mod:`sfu.config.loading`, which validates a TOML file with pydantic.

Each check words its error as the message names the key it is about
(``expected an integer in 1..65535, got "abc"``); the loader prefixes the file
and the key path. Checks that look at the machine (``announced_ip = "auto"``,
the TLS files) are the loader's.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, PlainValidator, with_config
from pydantic_core import PydanticCustomError

from sfu.models.validation import invalid

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
MEDIA_KINDS: tuple[str, ...] = ("audio", "video")
EVENT_LOOPS: tuple[str, ...] = ("uvloop", "asyncio")
ICE_URL_SCHEMES: tuple[str, ...] = ("stun", "stuns", "turn", "turns")


def show(value: object) -> str:
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


def _expected(want: str, value: object) -> PydanticCustomError:
    return invalid(f"expected {want}, got {show(value)}")


# --------------------------------------------------------------------------- field checks
# Plain validators: they see the TOML value as it is, so nothing is converted
# behind the user's back (`port = "3000"` and `port = true` are errors).


def _integer(lo: int, hi: int | None = None) -> PlainValidator:
    want = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"

    def check(value: object) -> int:
        # bool is an int subclass: `port = true` must not mean port 1.
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < lo
            or (hi is not None and value > hi)
        ):
            raise _expected(want, value)
        return value

    return PlainValidator(check)


def _positive_number(value: object) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise _expected("a number > 0", value)
    return float(value)


def _non_negative_number(value: object) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise _expected("a number >= 0", value)
    return float(value)


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _expected("true or false", value)
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value)
    return value


def _one_of(choices: tuple[str, ...], *, lower: bool = False) -> PlainValidator:
    quoted = [json.dumps(choice) for choice in choices]
    want = " or ".join(quoted) if len(quoted) == 2 else f"one of {', '.join(quoted)}"

    def check(value: object) -> str:
        text = _string(value)
        if lower:
            text = text.lower()
        if text not in choices:
            raise _expected(want, value)
        return text

    return PlainValidator(check)


def _ip_address(value: object) -> str:
    text = _string(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise _expected("an IPv4 or IPv6 address", value) from None


def _announced_ip(value: object) -> str | None:
    """ "" (unset: the listen IP) or an address clients can send to. "auto" is
    resolved by the loader before this runs."""
    if value == "":
        return None
    address = _ip_address(value)
    if ipaddress.ip_address(address).is_unspecified:
        raise invalid(
            f"{show(address)} cannot be announced to clients;"
            " give the IP clients should send media to"
        )
    return address


def _codec_parameters(value: object) -> dict[str, str | int]:
    if not isinstance(value, Mapping):
        raise _expected("a table", value)
    for name, param in value.items():
        if isinstance(param, bool) or not isinstance(param, str | int):
            raise invalid(f"expected a string or an integer, got {show(param)}", field=str(name))
    return {str(name): param for name, param in value.items()}


def _ice_urls(value: object) -> tuple[str, ...]:
    urls = [value] if isinstance(value, str) else value
    if (
        not isinstance(urls, list)
        or not urls
        or not all(isinstance(u, str) and u.split(":", 1)[0] in ICE_URL_SCHEMES for u in urls)
    ):
        raise invalid('expected "turn:HOST:PORT" or "stun:..." URLs')
    return tuple(urls)


def _array_of_tables(key: str, *, empty: str | None = None) -> BeforeValidator:
    def check(value: object) -> object:
        if not isinstance(value, list | tuple):
            raise _expected(f"an array of tables ([[{key}]])", value)
        if not value and empty is not None:
            raise invalid(empty)
        return value

    return BeforeValidator(check)


Port = Annotated[int, _integer(1, 65535)]
IpAddress = Annotated[str, PlainValidator(_ip_address)]
Seconds = Annotated[float, PlainValidator(_positive_number)]
Flag = Annotated[bool, PlainValidator(_boolean)]
Text = Annotated[str, PlainValidator(_string)]


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ServerConfig:
    """The whole server: the signalling process and its media workers."""

    # "uvloop" (measured side by side with `sfu bench --scenario fanout-8`: 5.2 %
    # CPU against 5.5-6.5 % with asyncio's loop) or "asyncio", the standard loop.
    event_loop: Annotated[str, _one_of(EVENT_LOOPS)] = "uvloop"


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP/WebSocket signalling listener."""

    listen_ip: IpAddress = "127.0.0.1"
    port: Port = 3000
    max_request_bytes: Annotated[int, _integer(1)] = 65536


@dataclass(frozen=True)
class MediaConfig:
    """The UDP sockets that carry RTP/RTCP (ICE + DTLS + SRTP)."""

    listen_ip: IpAddress = "127.0.0.1"
    # The IP written into ICE candidates; None means the same as listen_ip.
    announced_ip: Annotated[str | None, PlainValidator(_announced_ip)] = None
    rtc_min_port: Port = 40000
    rtc_max_port: Port = 49999
    # Seconds without a valid ICE check or media from the client before a
    # connected transport is closed (and its peer told).
    ice_timeout: Seconds = 30.0
    # Single-port mode: every transport on this one UDP port (0: off, a port
    # per transport from the range above).
    udp_port: Annotated[int, _integer(0, 65535)] = 0
    # ICE over TCP (passive candidates, RFC 6544): a fallback for networks
    # that block UDP. Each transport also listens on TCP (the same port
    # number where free; in single-port mode, TCP udp_port).
    enable_tcp: Flag = False
    # The C extension's send path: consumers rewrite and send in C (false:
    # in Python, 2-2.5x the CPU per forwarded packet; for measuring).
    native_send: Flag = True
    # The C extension's receive path: SRTP and RTP parsing in C (false: in Python).
    native_receive: Flag = True
    # Data channels (SCTP over DTLS, mediasoup's DataProducer/DataConsumer):
    # offered on a transport whose client sends sctpCapabilities.
    enable_sctp: Flag = True
    # SCTP streams each way (mediasoup's numSctpStreams OS and MIS).
    num_sctp_streams: Annotated[int, _integer(1, 65535)] = 1024
    # The largest data message accepted or sent (mediasoup's default).
    max_sctp_message_size: Annotated[int, _integer(1, 16 * 1024 * 1024)] = 262144
    # Bytes queued toward one data consumer before its messages are dropped
    # (unreliable) or it is closed after sctp_stall_timeout (reliable).
    sctp_send_buffer_size: Annotated[int, _integer(1024)] = 262144
    sctp_stall_timeout: Seconds = 10.0
    # Messages per second one transport may send on its data producers (its
    # peer's rate, as a token bucket of one second's burst); 0 is no limit.
    data_messages_per_second: Annotated[int, _integer(0)] = 200

    @property
    def announced_address(self) -> str:
        """The address clients are told to send media to."""
        return self.announced_ip or self.listen_ip


def _check_media(media: MediaConfig) -> MediaConfig:
    if media.announced_ip is None and ipaddress.ip_address(media.listen_ip).is_unspecified:
        raise invalid(
            f"must be set when media.listen_ip is {show(media.listen_ip)}:"
            " clients cannot send media to an unspecified address",
            field="announced_ip",
        )
    if media.rtc_min_port > media.rtc_max_port:
        raise invalid(
            f"{media.rtc_min_port} is greater than media.rtc_max_port ({media.rtc_max_port})",
            field="rtc_min_port",
        )
    return media


@dataclass(frozen=True)
class WorkersConfig:
    """Media worker processes (one per core, as mediasoup)."""

    # How many; 0 means one per CPU.
    count: Annotated[int, _integer(0, 256)] = 0
    # A room's router takes this many peers before the room spreads to a
    # router on another worker (joined by pipe transports); 0 never spreads.
    max_peers_per_router: Annotated[int, _integer(0)] = 50

    @property
    def resolved_count(self) -> int:
        return self.count or os.cpu_count() or 1


@dataclass(frozen=True)
class MediaCodecConfig:
    """One entry of the router's media codecs (a mediasoup RtpCodecCapability)."""

    kind: Annotated[str, _one_of(MEDIA_KINDS)]
    mime_type: Text
    clock_rate: Annotated[int, _integer(1)]
    channels: Annotated[int | None, _integer(1, 8)] = None
    parameters: Annotated[dict[str, str | int], PlainValidator(_codec_parameters)] = field(
        default_factory=dict, hash=False
    )
    preferred_payload_type: Annotated[int | None, _integer(0, 127)] = None

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


def _check_codec(codec: MediaCodecConfig) -> MediaCodecConfig:
    prefix, slash, subtype = codec.mime_type.partition("/")
    if not slash or not subtype or "/" in subtype or prefix.lower() != codec.kind:
        example = "audio/opus" if codec.kind == "audio" else "video/VP8"
        raise invalid(
            f'expected "{codec.kind}/<codec>" (e.g. "{example}"), got {show(codec.mime_type)}',
            field="mime_type",
        )
    if subtype.lower() == "rtx":
        raise invalid(
            "RTX is added by the router for every video codec; do not list it", field="mime_type"
        )
    if codec.channels is not None and codec.kind != "audio":
        raise invalid("only audio codecs have channels", field="channels")
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

    media_codecs: Annotated[
        tuple[Annotated[MediaCodecConfig, AfterValidator(_check_codec)], ...],
        _array_of_tables("router.media_codecs", empty="must list at least one codec"),
    ] = DEFAULT_MEDIA_CODECS

    def mediasoup_media_codecs(self) -> list[dict[str, Any]]:
        """``mediaCodecs`` for ``worker.createRouter``."""
        return [codec.to_mediasoup() for codec in self.media_codecs]


@dataclass(frozen=True)
class SignalingConfig:
    """The protoo-style request/response signalling."""

    # Seconds the server waits for a client to answer a server-initiated request
    # (e.g. "newConsumer") before giving up on it.
    consumer_request_timeout: Seconds = 10.0
    # Seconds a peer whose WebSocket dropped is kept (media flowing) so that it
    # can resume its session; after that it is closed everywhere.
    peer_grace_period: Seconds = 10.0
    # Seconds given to peers to leave on SIGTERM before the server exits.
    shutdown_timeout: Seconds = 5.0


AtLeastOne = Annotated[int, _integer(1)]
# 0 turns the cap off.
ZeroOrMore = Annotated[int, _integer(0)]
Rate = Annotated[float, PlainValidator(_non_negative_number)]


@dataclass(frozen=True)
class LimitsConfig:
    """Caps that keep one client from exhausting the server. Over a cap the
    request gets a clear error (protoo errorCode 429 or 503)."""

    max_rooms: AtLeastOne = 1000
    max_peers_per_room: AtLeastOne = 100
    max_transports_per_peer: AtLeastOne = 4
    max_producers_per_peer: AtLeastOne = 8
    requests_per_second: Seconds = 50.0
    request_burst: AtLeastOne = 100
    # Per client IP (the TCP peer address; behind a proxy every client is the
    # proxy's): concurrent protoo WebSockets, and WebSocket upgrades (joins and
    # resumes) as a token bucket. Over them the upgrade gets HTTP 429.
    # max_connections_per_ip = 0 or joins_per_second_per_ip = 0: that cap is off.
    # The defaults stay above `sfu bench`'s largest scenarios, which run
    # thousands of peers from 127.0.0.1.
    max_connections_per_ip: ZeroOrMore = 5000
    joins_per_second_per_ip: Rate = 500.0
    join_burst_per_ip: AtLeastOne = 5000


@dataclass(frozen=True)
class IceServerConfig:
    """A STUN/TURN server handed to clients (RTCIceServer). With ``shared_secret``
    (coturn's TURN REST API, ``use-auth-secret``), each client gets a
    time-limited username and credential instead of static ones."""

    urls: Annotated[tuple[str, ...], PlainValidator(_ice_urls)]
    username: Text = ""
    credential: Text = ""
    shared_secret: Text = ""
    ttl: Annotated[int, _integer(60)] = 86400


def _check_ice_server(server: IceServerConfig) -> IceServerConfig:
    is_turn = any(url.startswith("turn") for url in server.urls)
    if is_turn and not server.shared_secret and not (server.username and server.credential):
        raise invalid(
            "TURN needs username and credential, or shared_secret (coturn REST API)",
            field="username",
        )
    return server


@dataclass(frozen=True)
class TlsConfig:
    """HTTPS/WSS for the signalling port. Both empty: plain HTTP (fine on
    localhost, which browsers treat as a secure context)."""

    cert: Text = ""
    key: Text = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert)


def _check_tls(tls: TlsConfig) -> TlsConfig:
    if bool(tls.cert) != bool(tls.key):
        raise invalid(
            "must be set too: HTTPS needs both a certificate and its key",
            field="key" if tls.cert else "cert",
        )
    return tls


# HS256 keys shorter than this are brute-forceable; LiveKit asks for 32 too.
MIN_SECRET_BYTES = 32


def _api_keys(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise _expected('a table of KEY = "SECRET"', value)
    for key, secret in value.items():
        if not isinstance(secret, str):
            raise invalid(f"expected a string, got {show(secret)}", field=str(key))
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise invalid(
                f"the secret is {len(secret.encode())} bytes; at least {MIN_SECRET_BYTES}"
                " are needed (`openssl rand -base64 32` makes one)",
                field=str(key),
            )
    return tuple((str(key), secret) for key, secret in value.items())


@dataclass(frozen=True)
class AuthConfig:
    """Access control: LiveKit access tokens (docs/auth.md). With no key the
    server is open: anyone who reaches it may join any room."""

    # A table API key -> its secret (at least 32 bytes), kept as (key, secret)
    # pairs so that the config stays hashable. SFU_API_KEY / SFU_API_SECRET add one.
    keys: Annotated[tuple[tuple[str, str], ...], PlainValidator(_api_keys)] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @property
    def secrets(self) -> dict[str, str]:
        """API key -> secret."""
        return dict(self.keys)


def _webhook_urls(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise _expected("a list of URLs", value)
    for url in value:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise invalid(f"expected an http:// or https:// URL, got {show(url)}")
    return tuple(value)


@dataclass(frozen=True)
class WebhooksConfig:
    """LiveKit webhooks (docs/webhooks.md): each event POSTed to every URL,
    signed with ``api_key``'s secret (one of ``[auth] keys``)."""

    # SFU_WEBHOOK_URLS (comma-separated) sets these.
    urls: Annotated[tuple[str, ...], PlainValidator(_webhook_urls)] = ()
    api_key: str = ""
    # Per attempt; a receiver that hangs is given up on after this long.
    request_timeout: Seconds = 5.0
    # Attempts per event (the first included), with doubling pauses between.
    max_attempts: Annotated[int, _integer(1, 20)] = 5
    # Events waiting for delivery, all URLs together; more are dropped (and counted).
    max_pending: Annotated[int, _integer(1)] = 1000


@dataclass(frozen=True)
class RoomsConfig:
    """The room lifecycle (docs/auth.md, "Rooms"). A room is made by the first
    join (``auto_create``) or by RoomService CreateRoom; with nobody in it, it
    closes after its empty timeout."""

    # False: only RoomService CreateRoom makes rooms; a join to a missing room
    # gets HTTP 404 at the upgrade.
    auto_create: Flag = True
    # Seconds a CreateRoom'd room stays open with nobody in it (before the first
    # join and after the last peer leaves), unless CreateRoom gives its own.
    # LiveKit's default.
    empty_timeout: AtLeastOne = 300
    # Seconds a room made by a join stays open after its last peer leaves
    # (0: it closes at once, as a room of a demo link should).
    departure_timeout: ZeroOrMore = 0
    # Peers per room unless CreateRoom says otherwise (0: no cap other than
    # limits.max_peers_per_room, which always applies).
    max_participants: ZeroOrMore = 0


@dataclass(frozen=True)
class RecordingConfig:
    """Room recordings (docs/recording.md): one file per track, remuxed by the recorder process."""

    # Where each room's recording directory goes (relative to the working directory).
    directory: Text = "recordings"
    # Record every room from its first producer until it closes.
    auto: Flag = False
    # Recording stops (with an error in the log) when the disk has less free space than this.
    free_space_floor_mb: Annotated[int, _integer(0)] = 500


@dataclass(frozen=True)
class LogConfig:
    level: Annotated[str, _one_of(LOG_LEVELS, lower=True)] = "info"
    # "text" for people, "json" for log pipelines (one object a line, with the
    # room, peer and transport ids when there are some).
    format: Annotated[str, _one_of(("text", "json"))] = "text"


# Unknown keys are errors (a typo must not silently keep a default); pydantic
# applies this to the sections' dataclasses too.
@with_config(ConfigDict(extra="forbid"))
@dataclass(frozen=True)
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    media: Annotated[MediaConfig, AfterValidator(_check_media)] = field(default_factory=MediaConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    signaling: SignalingConfig = field(default_factory=SignalingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    tls: Annotated[TlsConfig, AfterValidator(_check_tls)] = field(default_factory=TlsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    ice_servers: Annotated[
        tuple[Annotated[IceServerConfig, AfterValidator(_check_ice_server)], ...],
        _array_of_tables("ice_servers"),
    ] = ()
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    rooms: RoomsConfig = field(default_factory=RoomsConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
