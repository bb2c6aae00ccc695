"""Configuration loading/validation and the command line."""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sfu.cli import main
from sfu.config import (
    DEFAULT_MEDIA_CODECS,
    Config,
    MediaCodecConfig,
    config_from_dict,
    load_config,
)
from sfu.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "sfu.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(text: str, tmp_path: Path) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


# ----------------------------------------------------------------- defaults / example


def test_none_gives_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.http.listen_ip == "127.0.0.1"
    assert config.http.port == 3000
    assert config.http.max_request_bytes == 65536
    assert config.media.listen_ip == "127.0.0.1"
    assert config.media.announced_ip is None
    assert config.media.announced_address == "127.0.0.1"
    assert (config.media.rtc_min_port, config.media.rtc_max_port) == (40000, 49999)
    assert config.router.media_codecs == DEFAULT_MEDIA_CODECS
    assert config.signaling.consumer_request_timeout == 10.0
    assert config.log.level == "info"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()


def test_example_file_loads_and_equals_defaults() -> None:
    # The example documents the defaults: it must load, and change nothing.
    assert load_config(EXAMPLE) == Config()
    assert load_config(str(EXAMPLE)) == Config()


def test_default_codecs() -> None:
    mimes = [c.mime_type for c in DEFAULT_MEDIA_CODECS]
    assert mimes == ["audio/opus", "video/VP8", "video/VP9", "video/H264", "video/H264"]
    assert [c.to_mediasoup() for c in DEFAULT_MEDIA_CODECS] == [
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
        {
            "kind": "video",
            "mimeType": "video/VP9",
            "clockRate": 90000,
            "parameters": {"profile-id": 2},
        },
        {
            "kind": "video",
            "mimeType": "video/H264",
            "clockRate": 90000,
            "parameters": {
                "packetization-mode": 1,
                "profile-level-id": "4d0032",
                "level-asymmetry-allowed": 1,
            },
        },
        {
            "kind": "video",
            "mimeType": "video/H264",
            "clockRate": 90000,
            "parameters": {
                "packetization-mode": 1,
                "profile-level-id": "42e01f",
                "level-asymmetry-allowed": 1,
            },
        },
    ]


def test_to_mediasoup_preferred_payload_type_and_copy() -> None:
    codec = MediaCodecConfig(
        kind="audio",
        mime_type="audio/opus",
        clock_rate=48000,
        channels=2,
        parameters={"useinbandfec": 1},
        preferred_payload_type=100,
    )
    out = codec.to_mediasoup()
    assert out == {
        "kind": "audio",
        "mimeType": "audio/opus",
        "clockRate": 48000,
        "channels": 2,
        "parameters": {"useinbandfec": 1},
        "preferredPayloadType": 100,
    }
    out["parameters"]["useinbandfec"] = 0
    assert codec.parameters == {"useinbandfec": 1}


def test_config_is_frozen_and_hashable() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.http.port = 1  # type: ignore[misc]
    hash(config)


def test_partial_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
[http]
port = 8443

[media]
listen_ip = "0.0.0.0"
announced_ip = "192.0.2.10"
rtc_min_port = 50000
rtc_max_port = 50000

[signaling]
consumer_request_timeout = 3

[log]
level = "DEBUG"

[[router.media_codecs]]
kind = "audio"
mime_type = "audio/opus"
clock_rate = 48000
channels = 2
preferred_payload_type = 111
""",
        )
    )
    assert config.http == dataclasses.replace(Config().http, port=8443)
    assert config.media.listen_ip == "0.0.0.0"
    assert config.media.announced_ip == "192.0.2.10"
    assert config.media.announced_address == "192.0.2.10"
    assert (config.media.rtc_min_port, config.media.rtc_max_port) == (50000, 50000)
    assert config.signaling.consumer_request_timeout == 3.0
    assert isinstance(config.signaling.consumer_request_timeout, float)
    assert config.log.level == "debug"
    assert config.router.media_codecs == (
        MediaCodecConfig(
            kind="audio",
            mime_type="audio/opus",
            clock_rate=48000,
            channels=2,
            preferred_payload_type=111,
        ),
    )


def test_ipv6_addresses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[http]\nlisten_ip = "::1"\n[media]\nlisten_ip = "::1"\n'))
    assert config.http.listen_ip == "::1"
    assert config.media.announced_address == "::1"


def test_config_from_dict_without_source() -> None:
    assert config_from_dict({}) == Config()
    with pytest.raises(ConfigError, match=r'^unknown key "http\.prot"'):
        config_from_dict({"http": {"prot": 1}})


# ---------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = error_of("[htpp]\nport = 1\n", tmp_path)
    assert 'unknown key "htpp"' in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    message = error_of("[http]\nprot = 3000\n", tmp_path)
    assert 'unknown key "http.prot"' in message


def test_unknown_key_in_codec_entry(tmp_path: Path) -> None:
    message = error_of(
        """
[[router.media_codecs]]
kind = "audio"
mime_type = "audio/opus"
clock_rate = 48000

[[router.media_codecs]]
kind = "video"
mime_type = "video/VP8"
clockrate = 90000
""",
        tmp_path,
    )
    assert 'unknown key "router.media_codecs[1].clockrate"' in message


# ----------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("text", "key", "detail"),
    [
        ('[media]\nrtc_min_port = "abc"\n', "media.rtc_min_port", 'got "abc"'),
        ("[media]\nrtc_max_port = 70000\n", "media.rtc_max_port", "got 70000"),
        ("[http]\nport = 0\n", "http.port", "1..65535"),
        ("[http]\nport = 80.5\n", "http.port", "got 80.5"),
        # A boolean is not an integer (Python's bool is an int subclass).
        ("[http]\nport = true\n", "http.port", "got true"),
        ("[http]\nmax_request_bytes = false\n", "http.max_request_bytes", "got false"),
        ('[http]\nlisten_ip = "localhost"\n', "http.listen_ip", 'got "localhost"'),
        ('[media]\nlisten_ip = "300.1.2.3"\n', "media.listen_ip", 'got "300.1.2.3"'),
        ('[media]\nannounced_ip = "example.com"\n', "media.announced_ip", "example.com"),
        ('[media]\nannounced_ip = "0.0.0.0"\n', "media.announced_ip", "0.0.0.0"),
        ('[media]\nlisten_ip = "0.0.0.0"\n', "media.announced_ip", "must be set"),
        (
            "[media]\nrtc_min_port = 50000\nrtc_max_port = 40000\n",
            "media.rtc_min_port",
            "greater than media.rtc_max_port",
        ),
        ('[log]\nlevel = "verbose"\n', "log.level", 'got "verbose"'),
        ("[log]\nlevel = 10\n", "log.level", "expected a string"),
        (
            "[signaling]\nconsumer_request_timeout = 0\n",
            "signaling.consumer_request_timeout",
            "> 0",
        ),
        (
            "[signaling]\nconsumer_request_timeout = true\n",
            "signaling.consumer_request_timeout",
            "got true",
        ),
        ("http = 3\n", "http", "expected a table"),
        ("[router]\nmedia_codecs = []\n", "router.media_codecs", "at least one"),
    ],
)
def test_bad_value_names_key(tmp_path: Path, text: str, key: str, detail: str) -> None:
    message = error_of(text, tmp_path)
    assert f": {key}: " in message
    assert detail in message


def test_exact_message_format(tmp_path: Path) -> None:
    path = write(tmp_path, '[media]\nrtc_min_port = "abc"\n', name="config.example.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f'{path}: media.rtc_min_port: expected an integer in 1..65535, got "abc"'
    )


def codec_entry(**fields: Any) -> str:
    base: dict[str, Any] = {"kind": "video", "mime_type": "video/VP8", "clock_rate": 90000}
    base.update(fields)
    lines = ["[[router.media_codecs]]"]
    for name, value in base.items():
        if value is None:
            continue
        if isinstance(value, str):
            lines.append(f'{name} = "{value}"')
        elif isinstance(value, bool):
            lines.append(f"{name} = {'true' if value else 'false'}")
        elif isinstance(value, dict):
            inner = ", ".join(
                f'"{k}" = ' + (f'"{v}"' if isinstance(v, str) else str(v).lower())
                for k, v in value.items()
            )
            lines.append(f"{name} = {{ {inner} }}")
        else:
            lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("fields", "key", "detail"),
    [
        ({"kind": "data"}, "router.media_codecs[0].kind", 'got "data"'),
        ({"mime_type": "audio/opus"}, "router.media_codecs[0].mime_type", 'video/<codec>"'),
        ({"mime_type": "VP8"}, "router.media_codecs[0].mime_type", 'got "VP8"'),
        ({"mime_type": "video/rtx"}, "router.media_codecs[0].mime_type", "RTX"),
        ({"clock_rate": 0}, "router.media_codecs[0].clock_rate", "got 0"),
        ({"clock_rate": None}, "router.media_codecs[0].clock_rate", "missing"),
        ({"channels": 2}, "router.media_codecs[0].channels", "only audio"),
        ({"preferred_payload_type": 128}, "router.media_codecs[0].preferred_payload_type", "128"),
        (
            {"parameters": {"x-google-start-bitrate": True}},
            "router.media_codecs[0].parameters.x-google-start-bitrate",
            "got true",
        ),
    ],
)
def test_bad_codec_names_key(tmp_path: Path, fields: dict[str, Any], key: str, detail: str) -> None:
    message = error_of(codec_entry(**fields), tmp_path)
    assert f": {key}: " in message
    assert detail in message


def test_codec_mime_type_case_insensitive_kind(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, codec_entry(mime_type="Video/VP8")))
    assert config.router.media_codecs[0].mime_type == "Video/VP8"


# ---------------------------------------------------------------- file-level errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="no such file") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_toml_syntax_error(tmp_path: Path) -> None:
    message = error_of("[http\nport = 3000\n", tmp_path)
    assert "invalid TOML" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[log]\nlevel = "\xe9"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


# ------------------------------------------------------------------------ command line


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out
    assert "Selective Forwarding Unit" in out
    assert "config.example.toml" in out


def test_run_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    assert "--config" in capsys.readouterr().out


def test_bad_config_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "[http]\nprot = 3000\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sfu: ")
    assert 'unknown key "http.prot"' in err
    assert str(bad) in err


def test_missing_config_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_bad_log_level_option_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--log-level", "loud"])
    assert info.value.code == 2


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """``main`` calls ``logging.basicConfig``; keep it from leaking into other tests."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Install a stand-in ``sfu.server`` that records the config it is started with."""
    started: list[Config] = []

    async def run_server(config: Config) -> None:
        started.append(config)

    module = types.ModuleType("sfu.server")
    module.run_server = run_server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sfu.server", module)
    return started


@pytest.mark.parametrize("prefix", [[], ["run"]])
def test_run_with_and_without_subcommand(
    tmp_path: Path, fake_server: list[Config], prefix: list[str]
) -> None:
    path = write(tmp_path, '[http]\nport = 4000\n[log]\nlevel = "warning"\n')
    assert main([*prefix, "--config", str(path), "--log-level", "error"]) == 0
    (config,) = fake_server
    assert config.http.port == 4000
    assert config.log.level == "error"  # the option overrides the file


def test_run_without_config_uses_defaults(fake_server: list[Config]) -> None:
    assert main([]) == 0
    assert fake_server == [Config()]


def test_options_before_subcommand_are_kept(tmp_path: Path, fake_server: list[Config]) -> None:
    path = write(tmp_path, "[http]\nport = 4001\n")
    assert main(["--config", str(path), "run"]) == 0
    assert fake_server[0].http.port == 4001


def test_keyboard_interrupt_returns_0(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run_server(config: Config) -> None:
        raise KeyboardInterrupt

    module = types.ModuleType("sfu.server")
    module.run_server = run_server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sfu.server", module)
    assert main([]) == 0


def test_bind_failure_returns_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def run_server(config: Config) -> None:
        raise OSError(98, "Address already in use")

    module = types.ModuleType("sfu.server")
    module.run_server = run_server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sfu.server", module)
    assert main([]) == 1
    assert "Address already in use" in capsys.readouterr().err
