"""ICE servers handed to clients: static TURN credentials, or coturn REST-API ones."""

import base64
import hashlib
import hmac
from typing import Any

import pytest

from sfu.config import config_from_dict
from sfu.errors import ConfigError
from sfu.signaling.ice_servers import ice_servers_for, turn_rest_credentials


def test_turn_rest_credentials_match_coturns_scheme() -> None:
    username, credential = turn_rest_credentials("s3cret", "alice", ttl=600, now=1_000_000)
    assert username == "1000600:alice"
    expected = base64.b64encode(
        hmac.new(b"s3cret", b"1000600:alice", hashlib.sha1).digest()
    ).decode()
    assert credential == expected


def test_ice_servers_from_config() -> None:
    config = config_from_dict(
        {
            "ice_servers": [
                {"urls": "stun:127.0.0.1:3478"},
                {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "u", "credential": "p"},
                {"urls": ["turn:127.0.0.1:3478"], "shared_secret": "s", "ttl": 120},
            ]
        }
    )
    servers = ice_servers_for(config.ice_servers, "bob")
    assert servers[0] == {"urls": ["stun:127.0.0.1:3478"]}
    assert servers[1] == {
        "urls": ["turn:127.0.0.1:3478?transport=udp"],
        "username": "u",
        "credential": "p",
    }
    assert servers[2]["username"].endswith(":bob")
    assert servers[2]["credential"]


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"urls": "http://x"}, "ice_servers[0].urls"),
        ({"urls": ["turn:x:3478"]}, "ice_servers[0].username"),
        ({"urls": ["turn:x:3478"], "shared_secret": "s", "ttl": 5}, "ice_servers[0].ttl"),
        ({"urls": ["turn:x:3478"], "password": "p"}, "ice_servers[0].password"),
    ],
)
def test_bad_ice_servers_name_the_key(entry: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict({"ice_servers": [entry]})
