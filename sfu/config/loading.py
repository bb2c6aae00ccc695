"""Loading the configuration: a TOML file, then ``SFU_*`` environment
variables, then command-line flags, validated into :class:`~sfu.config.Config`.

Every setting has a default, so the server starts with no file at all (bound to
127.0.0.1). A file only has to name what it changes; see ``config.example.toml``.

Anything wrong stops start-up with a :class:`~sfu.errors.ConfigError` whose
message names the file and the full key path, e.g.::

    config.toml: media.rtc_min_port: expected an integer in 1..65535, got "abc"
    config.toml: unknown key "http.prot" (expected one of: listen_ip, port, ...)
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import os
import tomllib
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sfu.errors import ConfigError
from sfu.models.validation import FieldError, field_errors, field_path

from .model import Config, show

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
    "SFU_NATIVE_SEND": ("media.native_send",),
    "SFU_NATIVE_RECEIVE": ("media.native_receive",),
    "SFU_EVENT_LOOP": ("server.event_loop",),
    "SFU_ROOMS_AUTO_CREATE": ("rooms.auto_create",),
    "SFU_ROOMS_EMPTY_TIMEOUT": ("rooms.empty_timeout",),
    "SFU_ROOMS_MAX_PARTICIPANTS": ("rooms.max_participants",),
    # Comma-separated; WebhooksConfig splits them.
    "SFU_WEBHOOK_URLS": ("webhooks.urls",),
    "SFU_WEBHOOK_API_KEY": ("webhooks.api_key",),
    "SFU_RECORDING_DIRECTORY": ("recording.directory",),
    "SFU_RECORDING_AUTO": ("recording.auto",),
}
_INTEGER_KEYS = {
    "http.port",
    "media.udp_port",
    "workers.count",
    "rooms.empty_timeout",
    "rooms.max_participants",
}
_BOOLEAN_KEYS = {"media.native_send", "media.native_receive", "rooms.auto_create", "recording.auto"}
# SFU_NATIVE_SEND=0 has always meant off; the words are accepted too.
_BOOLEAN_WORDS = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with dotted keys set from strings (environment or command line).
    Integers and booleans are converted when they look like one; validation comes after."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted, text in overrides.items():
        section, _, name = dotted.partition(".")
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            continue  # validation reports the bad section
        value: Any = text
        if dotted in _INTEGER_KEYS and text.strip().isdigit():
            value = int(text)
        elif dotted in _BOOLEAN_KEYS:
            value = _BOOLEAN_WORDS.get(text.strip().lower(), text)
        table[name] = value
    return merged


def _with_environment_key(
    data: Mapping[str, Any], environ: Mapping[str, str], source: str
) -> Mapping[str, Any]:
    """SFU_API_KEY / SFU_API_SECRET: one more ``[auth] keys`` entry."""
    key, secret = environ.get("SFU_API_KEY"), environ.get("SFU_API_SECRET")
    if key is None and secret is None:
        return data
    if not key or not secret:
        raise ConfigError(f"{source}: SFU_API_KEY and SFU_API_SECRET must be set together")
    auth = data.get("auth", {})
    keys = auth.get("keys", {}) if isinstance(auth, Mapping) else {}
    if not isinstance(auth, Mapping) or not isinstance(keys, Mapping):
        return data  # validation reports the bad table
    return {**data, "auth": {**auth, "keys": {**keys, key: secret}}}


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
    environ = environ or {}
    layered = {**environment_overrides(environ), **(overrides or {})}
    if path is None:
        data = _with_environment_key({}, environ, "settings")
        return (
            config_from_dict(apply_overrides(data, layered), source="settings")
            if layered or data
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
    data = _with_environment_key(data, environ, source)
    return config_from_dict(apply_overrides(data, layered), source=source)


def config_from_dict(data: Mapping[str, Any], source: str | None = None) -> Config:
    """Validate already-parsed TOML data. ``source`` (a file name) prefixes error messages."""
    prefix = f"{source}: " if source else ""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{prefix}{key}: {message}")

    data = _resolve_auto_announced_ip(data, fail)
    try:
        config = _config_adapter().validate_python(data)
    except ValidationError as error:
        errors = field_errors(error)
        # A misspelt key also leaves its real one missing: name the misspelling.
        unknown = (e for e in errors if e.type == "unexpected_keyword_argument")
        raise ConfigError(prefix + _describe(next(unknown, errors[0]))) from None
    if config.tls.enabled:
        check_tls_files(config.tls.cert, config.tls.key, fail)
    webhooks = config.webhooks
    if webhooks.urls and webhooks.api_key not in config.auth.secrets:
        raise fail(
            "webhooks.api_key",
            f"{show(webhooks.api_key)} is not one of the [auth] keys; webhooks are signed"
            " with that key's secret (set [auth] keys or SFU_API_KEY/SFU_API_SECRET)",
        )
    return config


@functools.cache
def _config_adapter() -> TypeAdapter[Config]:
    # Built on first use: the worker processes import the model, never load a file.
    return TypeAdapter(Config)


def _describe(found: FieldError) -> str:
    """One validation error as "key: what is wrong" (or "unknown key ...")."""
    key = field_path("", found.loc)
    if found.type == "unexpected_keyword_argument":
        allowed = [f.name for f in dataclasses.fields(_section_at(found.loc[:-1]))]
        return f"unknown key {json.dumps(key)} (expected one of: {', '.join(allowed)})"
    if found.is_custom:
        message = found.message
    elif found.type == "missing":
        message = "missing (required)"
    elif found.type in ("dataclass_type", "dict_type", "model_type"):
        message = f"expected a table, got {show(found.input)}"
    else:
        message = found.message
    return f"{key or '(top level)'}: {message}"


def _section_at(loc: tuple[str | int, ...]) -> Any:
    """The dataclass that the table at ``loc`` is validated into."""
    section: Any = Config
    for part in loc:
        if isinstance(part, int):  # an entry of an array of tables: tuple[Entry, ...]
            section = typing.get_args(section)[0]
        else:
            section = typing.get_type_hints(section)[part]
        while typing.get_origin(section) is typing.Annotated:
            section = typing.get_args(section)[0]
    return section


def _resolve_auto_announced_ip(
    data: Mapping[str, Any], fail: Callable[[str, str], ConfigError]
) -> Mapping[str, Any]:
    """``announced_ip = "auto"``: this machine's address, found before validation."""
    media = data.get("media") if isinstance(data, Mapping) else None
    if not isinstance(media, Mapping) or media.get("announced_ip") != "auto":
        return data
    detected = detect_announced_ip()
    if detected is None:
        raise fail(
            "media.announced_ip",
            '"auto" found no non-loopback IPv4 address on this machine; give the IP',
        )
    return {**data, "media": {**media, "announced_ip": detected}}


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


def check_tls_files(cert: str, key: str, fail: Callable[[str, str], ConfigError]) -> None:
    """Stop start-up with a clear message if the cert or key is missing,
    unreadable, not PEM, or the two do not match."""
    import ssl

    for name, path in (("tls.cert", cert), ("tls.key", key)):
        if not os.path.isfile(path):
            raise fail(name, f"{show(path)}: no such file (`sfu certs --host NAME` makes a pair)")
        if not os.access(path, os.R_OK):
            raise fail(name, f"{show(path)}: not readable by this user")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            raise fail("tls.key", f"{show(key)} is not the key of {show(cert)}") from None
        raise fail("tls.cert", f"cannot load {show(cert)} with {show(key)}: {error}") from None
