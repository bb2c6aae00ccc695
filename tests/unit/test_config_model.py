"""The config package beyond test_config.py: the knobs that moved into it
(native send/receive, event loop), what the worker process gets, and what
importing it loads."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from sfu.config import Config, MediaConfig, config_from_dict, load_config
from sfu.config import loading as config_loading
from sfu.control.worker import worker_environment
from sfu.errors import ConfigError


def test_knob_defaults() -> None:
    config = Config()
    assert config.media.native_send is True
    assert config.media.native_receive is True
    assert config.server.event_loop == "uvloop"


def test_knobs_from_the_file() -> None:
    config = config_from_dict(
        {
            "media": {"native_send": False, "native_receive": False},
            "server": {"event_loop": "asyncio"},
        }
    )
    assert (config.media.native_send, config.media.native_receive) == (False, False)
    assert config.server.event_loop == "asyncio"


@pytest.mark.parametrize(
    ("environ", "send", "receive", "loop"),
    [
        ({"SFU_NATIVE_SEND": "0"}, False, True, "uvloop"),
        ({"SFU_NATIVE_RECEIVE": "0"}, True, False, "uvloop"),
        ({"SFU_NATIVE_SEND": "1", "SFU_NATIVE_RECEIVE": "false"}, True, False, "uvloop"),
        ({"SFU_NATIVE_SEND": " Off "}, False, True, "uvloop"),
        ({"SFU_EVENT_LOOP": "asyncio"}, True, True, "asyncio"),
    ],
)
def test_knobs_from_the_environment(
    environ: dict[str, str], send: bool, receive: bool, loop: str
) -> None:
    config = load_config(None, environ=environ)
    assert (config.media.native_send, config.media.native_receive) == (send, receive)
    assert config.server.event_loop == loop


def test_environment_overrides_the_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "sfu.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write('[media]\nnative_send = false\n[server]\nevent_loop = "asyncio"\n')
    config = load_config(path, environ={"SFU_NATIVE_SEND": "1", "SFU_EVENT_LOOP": "uvloop"})
    assert config.media.native_send is True
    assert config.server.event_loop == "uvloop"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"SFU_NATIVE_SEND": "maybe"},
            'settings: media.native_send: expected true or false, got "maybe"',
        ),
        (
            {"SFU_EVENT_LOOP": "trio"},
            'settings: server.event_loop: expected "uvloop" or "asyncio", got "trio"',
        ),
    ],
)
def test_bad_knobs_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ=environ)
    assert str(info.value) == message


def test_configured_knobs_reach_the_worker_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in environment, as the signalling process would have it.
    monkeypatch.setattr(os, "environ", {"SFU_NATIVE_RECEIVE": "false", "HOME": "/root"})
    media = load_config(None, environ=os.environ).media
    environment = worker_environment(media)
    # A variable in words becomes the "0"/"1" the media plane compares against.
    assert environment["SFU_NATIVE_RECEIVE"] == "0"
    assert environment["SFU_NATIVE_SEND"] == "1"
    assert environment["HOME"] == "/root"
    # From the file: the worker sees the configured value.
    media = config_from_dict({"media": {"native_send": False}}).media
    assert worker_environment(media)["SFU_NATIVE_SEND"] == "0"


def test_media_config_travels_to_the_worker_as_json() -> None:
    # As sfu/control/worker.py sends it and sfu/media/worker_process.py reads it back.
    media = config_from_dict(
        {"media": {"announced_ip": "192.0.2.1", "udp_port": 40000, "native_receive": False}}
    ).media
    encoded = json.dumps(dataclasses.asdict(media))
    assert MediaConfig(**json.loads(encoded)) == media


def test_announced_ip_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_loading, "detect_announced_ip", lambda: "192.0.2.7")
    config = config_from_dict({"media": {"listen_ip": "0.0.0.0", "announced_ip": "auto"}})
    assert config.media.announced_address == "192.0.2.7"
    monkeypatch.setattr(config_loading, "detect_announced_ip", lambda: None)
    with pytest.raises(ConfigError, match=r'^media\.announced_ip: "auto" found no'):
        config_from_dict({"media": {"announced_ip": "auto"}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "(top level): expected a table, got an array"),
        ({"server": []}, "server: expected a table, got an array"),
        ({"server": {"loop": "uvloop"}}, 'unknown key "server.loop" (expected one of: event_loop)'),
        ({"ice_servers": [{}]}, "ice_servers[0].urls: missing (required)"),
        (
            {"ice_servers": {"urls": "stun:x"}},
            "ice_servers: expected an array of tables ([[ice_servers]]), got a table",
        ),
    ],
)
def test_structural_errors(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_importing_the_config_loads_no_server_stack() -> None:
    # The media workers and the CLI read it; it must not drag in either plane.
    code = (
        "import sys, sfu.config\n"
        "sfu.config.load_config('config.example.toml')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'aiortc')"
        " or m.startswith('sfu.media'))\n"
        "sys.exit(heavy or 0)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)


def test_rooms_defaults_file_and_environment() -> None:
    rooms = Config().rooms
    assert (rooms.auto_create, rooms.empty_timeout, rooms.departure_timeout) == (True, 300, 0)
    assert rooms.max_participants == 0
    rooms = config_from_dict({"rooms": {"auto_create": False, "departure_timeout": 20}}).rooms
    assert (rooms.auto_create, rooms.departure_timeout) == (False, 20)
    environ = {
        "SFU_ROOMS_AUTO_CREATE": "false",
        "SFU_ROOMS_EMPTY_TIMEOUT": "60",
        "SFU_ROOMS_MAX_PARTICIPANTS": "12",
    }
    rooms = load_config(None, environ=environ).rooms
    assert (rooms.auto_create, rooms.empty_timeout, rooms.max_participants) == (False, 60, 12)


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"SFU_ROOMS_AUTO_CREATE": "perhaps"}, "rooms.auto_create"),
        ({"SFU_ROOMS_EMPTY_TIMEOUT": "-1"}, "rooms.empty_timeout"),
        ({"SFU_ROOMS_MAX_PARTICIPANTS": "many"}, "rooms.max_participants"),
    ],
)
def test_bad_rooms_settings_name_the_key(environ: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ=environ)
    assert field in str(info.value)
