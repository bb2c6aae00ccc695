"""The token verifier, admission and grants (sfu.auth), and the [auth] config,
against tokens minted by livekit-api's AccessToken, the real SDK."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from livekit.api import AccessToken
from livekit.api import VideoGrants as LiveKitGrants

from sfu.auth.admission import admit, token_from
from sfu.auth.claims import VideoGrants, track_source
from sfu.auth.tokens import TokenRefusal, TokenVerifier, mint_token
from sfu.config import config_from_dict, load_config
from sfu.errors import ConfigError

from ..hostile_tokens import hostile_tokens

KEY = "APIunit"
SECRET = "s" * 64
VERIFIER = TokenVerifier({KEY: SECRET})


def livekit_token(
    identity: str = "alice",
    room: str = "r1",
    ttl: datetime.timedelta = datetime.timedelta(hours=1),
    **grants: Any,
) -> str:
    return (
        AccessToken(KEY, SECRET)
        .with_identity(identity)
        .with_name("Alice")
        .with_metadata('{"a":1}')
        .with_ttl(ttl)
        .with_grants(LiveKitGrants(room_join=True, room=room, **grants))
        .to_jwt()
    )


def signed(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def refusal(token: str | None, room: str = "r1", peer: str = "alice") -> tuple[int, str]:
    with pytest.raises(TokenRefusal) as error:
        admit(VERIFIER, token, room, peer)
    return error.value.status, error.value.reason


def test_a_livekit_token_is_verified_with_livekit_defaults() -> None:
    claims = VERIFIER.verify(livekit_token())
    assert (claims.iss, claims.sub, claims.name, claims.metadata) == (
        KEY,
        "alice",
        "Alice",
        '{"a":1}',
    )
    grants = claims.video
    assert grants.room_join
    assert grants.room == "r1"
    assert grants.can_publish
    assert grants.can_subscribe
    assert grants.can_publish_data
    assert not grants.hidden
    assert not grants.can_publish_sources


def test_livekit_grants_keep_their_names() -> None:
    token = livekit_token(
        can_publish=False,
        can_subscribe=False,
        can_publish_data=False,
        can_publish_sources=["microphone"],
        hidden=True,
        room_admin=True,
        room_create=True,
        room_list=True,
        room_record=True,
    )
    grants = VERIFIER.verify(token).video
    assert not (grants.can_publish)
    assert not (grants.can_subscribe)
    assert not (grants.can_publish_data)
    assert grants.can_publish_sources == ["microphone"]
    assert grants.hidden
    assert grants.room_admin
    assert grants.room_create
    assert grants.room_list
    assert grants.room_record


def test_admission_takes_sub_as_the_peer_when_no_peer_id_is_given() -> None:
    assert admit(VERIFIER, livekit_token(), "r1", "").peer_id == "alice"
    assert admit(VERIFIER, livekit_token(), "r1", "alice").peer_id == "alice"


def test_every_refusal_has_its_status_and_reason() -> None:
    now = int(time.time())
    good = {"iss": KEY, "sub": "alice", "exp": now + 600, "video": {"room": "r1", "roomJoin": True}}
    assert refusal(None) == (401, "no_token")
    assert refusal("not.a.jwt") == (401, "malformed_token")
    assert refusal(signed({**good, "iss": "other"})) == (401, "unknown_key")
    assert refusal(signed(good, secret="x" * 40)) == (401, "bad_signature")
    assert refusal(livekit_token(ttl=datetime.timedelta(minutes=-5))) == (401, "expired")
    assert refusal(signed({**good, "nbf": now + 600})) == (401, "not_yet_valid")
    assert refusal(signed({k: v for k, v in good.items() if k != "exp"})) == (
        401,
        "malformed_token",
    )
    assert refusal(signed(good, algorithm="HS512")) == (401, "malformed_token")
    assert refusal(signed({**good, "video": {"roomJoin": "yes"}})) == (401, "invalid_claims")
    assert refusal(signed({**good, "video": {"room": "r1"}})) == (403, "no_room_join")
    assert refusal(livekit_token(room="r2")) == (403, "wrong_room")
    assert refusal(livekit_token(), peer="mallory") == (403, "wrong_identity")
    assert refusal(signed({**good, "sub": ""}), peer="") == (403, "wrong_identity")


def test_alg_none_is_refused() -> None:
    now = int(time.time())
    claims = {
        "iss": KEY,
        "sub": "alice",
        "exp": now + 600,
        "video": {"room": "r1", "roomJoin": True},
    }
    token = jwt.encode(claims, "", algorithm="none")
    assert refusal(token) == (401, "malformed_token")


def test_leeway_admits_a_token_just_expired() -> None:
    token = livekit_token(ttl=datetime.timedelta(seconds=-10))
    assert admit(VERIFIER, token, "r1", "alice").peer_id == "alice"


def test_minted_tokens_verify_and_keep_only_what_differs() -> None:
    grants = VideoGrants(room="r1", room_join=True, can_publish=False)
    token = mint_token(KEY, SECRET, identity="bob", grants=grants, ttl=60, name="Bob")
    claims = VERIFIER.verify(token)
    assert (claims.sub, claims.name, claims.video) == ("bob", "Bob", grants)
    assert jwt.decode(token, options={"verify_signature": False})["video"] == {
        "room": "r1",
        "roomJoin": True,
        "canPublish": False,
    }


def test_token_from_query_then_bearer() -> None:
    assert token_from({"access_token": "q"}, {"Authorization": "Bearer h"}) == "q"
    assert token_from({}, {"Authorization": "Bearer h"}) == "h"
    assert token_from({}, {"Authorization": "Basic h"}) is None
    assert token_from({}, {}) is None


@pytest.mark.parametrize(
    ("kind", "source", "expected"),
    [
        ("audio", "mic", "microphone"),
        ("video", "webcam", "camera"),
        ("video", "screen", "screen_share"),
        ("video", "share", "screen_share"),
        ("audio", "share", "screen_share_audio"),
        ("audio", None, "microphone"),
        ("video", None, "camera"),
        ("video", "whatever", "camera"),
    ],
)
def test_track_sources(kind: str, source: str | None, expected: str) -> None:
    app_data = {} if source is None else {"source": source}
    assert track_source(kind, app_data) == expected


def test_publish_refusals() -> None:
    assert VideoGrants().publish_refusal("video", {}) is None
    assert VideoGrants(can_publish=False).publish_refusal("audio", {})
    assert VideoGrants(hidden=True).publish_refusal("audio", {})
    mic_only = VideoGrants(can_publish_sources=["microphone"])
    assert mic_only.publish_refusal("audio", {"source": "mic"}) is None
    assert mic_only.publish_refusal("video", {"source": "webcam"})
    assert mic_only.publish_refusal("video", {"source": "screen"})
    assert VideoGrants(can_publish_data=False).data_refusal()
    assert VideoGrants().data_refusal() is None


def test_config_keys_and_short_secrets() -> None:
    assert not config_from_dict({}).auth.enabled
    assert config_from_dict({"auth": {"keys": {KEY: SECRET}}}).auth.secrets == {KEY: SECRET}
    with pytest.raises(ConfigError, match=r"auth\.keys\.k: the secret is 5 bytes; at least 32"):
        config_from_dict({"auth": {"keys": {"k": "short"}}})
    with pytest.raises(ConfigError, match=r"auth\.keys: expected a table"):
        config_from_dict({"auth": {"keys": "k"}})


def test_environment_pair_adds_a_key() -> None:
    config = load_config(None, environ={"SFU_API_KEY": "env", "SFU_API_SECRET": SECRET})
    assert config.auth.secrets == {"env": SECRET}
    with pytest.raises(ConfigError, match="must be set together"):
        load_config(None, environ={"SFU_API_KEY": "env"})
    with pytest.raises(ConfigError, match="at least 32"):
        load_config(None, environ={"SFU_API_KEY": "env", "SFU_API_SECRET": "short"})


def test_null_grants_are_absent_as_in_livekit() -> None:
    claims = {
        "iss": KEY,
        "sub": "alice",
        "exp": int(time.time()) + 600,
        "video": {"room": "r1", "roomJoin": True, "canPublish": None, "hidden": None},
    }
    grants = VERIFIER.verify(signed(claims)).video
    assert grants.can_publish
    assert not grants.hidden


def test_sfu_token_prints_a_token_signed_with_the_configured_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sfu.cli import main

    monkeypatch.setenv("SFU_API_KEY", KEY)
    monkeypatch.setenv("SFU_API_SECRET", SECRET)
    argv = ["token", "--room", "r1", "--identity", "alice", "--name", "A", "--ttl", "30m"]
    assert main([*argv, "--no-publish", "--no-subscribe", "--admin"]) == 0
    claims = VERIFIER.verify(capsys.readouterr().out.strip())
    assert claims.nbf is not None
    assert (claims.sub, claims.name, claims.exp - claims.nbf) == ("alice", "A", 1800)
    grants = claims.video
    assert (grants.room, grants.room_join, grants.room_admin) == ("r1", True, True)
    assert (grants.can_publish, grants.can_publish_data, grants.can_subscribe) == (False,) * 3
    monkeypatch.delenv("SFU_API_KEY")
    monkeypatch.delenv("SFU_API_SECRET")
    assert main(argv) == 2
    assert "no API key is configured" in capsys.readouterr().err


@settings(max_examples=1500, deadline=None)
@given(bad=hostile_tokens(KEY, SECRET, "r1"))
def test_hostile_tokens_are_refused_with_401_or_403_and_nothing_else(bad: str) -> None:
    """The same hostile tokens as the end-to-end test, many more of them: each is
    a TokenRefusal (401 or 403 with a reason and a message), never an admission
    and never another exception."""
    with pytest.raises(TokenRefusal) as error:
        admit(VERIFIER, bad, "r1", "alice")
    assert error.value.status in (401, 403)
    body = error.value.body()
    assert body["reason"]
    assert body["message"]
    json.dumps(body)


def test_sfu_client_takes_its_peer_id_from_the_token() -> None:
    """Without a peer_id, SfuClient is the token's `sub` (the server refuses any
    other peerId with 403); without a usable token, a random id as before."""
    from sfu.client import SfuClient

    token = mint_token(
        "APIkey", "s" * 40, identity="ada", grants=VideoGrants(room="r", room_join=True), ttl=60
    )
    assert SfuClient("ws://127.0.0.1:1", "r", access_token=token).peer_id == "ada"
    assert SfuClient("ws://127.0.0.1:1", "r", "bob", access_token=token).peer_id == "bob"
    assert len(SfuClient("ws://127.0.0.1:1", "r", access_token="not a jwt").peer_id) == 8
    assert len(SfuClient("ws://127.0.0.1:1", "r").peer_id) == 8
