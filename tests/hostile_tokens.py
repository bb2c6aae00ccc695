"""Hostile access tokens for property-based tests (hypothesis), for one key,
secret and room: mutated header, payload and signature; ``alg: none``; other
algorithms (HS384/HS512, RS256/ES256 shapes); other keys; huge tokens; wrong
types in the claims. None of them may be admitted to ``room`` as ``alice``:
each must be a 401 or a 403 (never an admission, never another error)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from hypothesis import strategies as st
from livekit.api import AccessToken, VideoGrants

__all__ = ["B64", "b64", "forged", "hostile_tokens"]

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SOURCES = {"camera", "microphone", "screen_share", "screen_share_audio"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: Any, signature: str = "") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{signature}"


def hostile_tokens(key: str, secret: str, room: str) -> st.SearchStrategy[str]:
    """Tokens that must never admit ``alice`` to ``room`` with ``key``/``secret``."""

    def claims(**changes: Any) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": key,
            "sub": "alice",
            "nbf": now,
            "exp": now + 600,
            "video": {"room": room, "roomJoin": True},
            **changes,
        }

    def hs256(payload: Any) -> str:
        """Any JSON payload, validly signed (PyJWT will not encode some bad claims)."""
        unsigned = forged({"alg": "HS256", "typ": "JWT"}, payload)[:-1]
        mac = hmac.new(secret.encode(), unsigned.encode(), hashlib.sha256).digest()
        return f"{unsigned}.{b64(mac)}"

    # Every base token is for another room than the one asked for, so a
    # mutation that happens to keep it valid is still a 403.
    base = (
        AccessToken(key, secret)
        .with_identity("alice")
        .with_ttl(datetime.timedelta(hours=1))
        .with_grants(VideoGrants(room="not-" + room, room_join=True))
        .to_jwt()
    )
    mutated = st.builds(
        lambda parts, segment, index, char: ".".join(
            part
            if i != segment
            else part[: index % (len(part) + 1)] + char + part[index % (len(part) + 1) + 1 :]
            for i, part in enumerate(parts)
        ),
        st.just(base.split(".")),
        st.integers(0, 2),
        st.integers(0, 400),
        st.sampled_from([*B64, ".", "=", "%", "+", "/", " ", ""]),
    )
    alg_none = st.builds(
        lambda alg, signature: forged({"alg": alg, "typ": "JWT"}, claims(), signature),
        st.sampled_from(["none", "None", "NONE", ""]),
        st.sampled_from(["", b64(b"x")]),
    )
    other_algorithm = st.one_of(
        st.builds(
            lambda alg: jwt.encode(claims(), secret, algorithm=alg),
            st.sampled_from(["HS384", "HS512"]),
        ),
        # The shapes of asymmetric tokens (the server holds no public keys).
        st.builds(
            lambda alg, signature: forged({"alg": alg, "typ": "JWT"}, claims(), b64(signature)),
            st.sampled_from(["RS256", "ES256", "PS256", "EdDSA"]),
            st.binary(min_size=0, max_size=300),
        ),
    )
    other_key = st.one_of(
        st.builds(
            lambda other: jwt.encode(claims(), other, algorithm="HS256"),
            st.text(min_size=32, max_size=64).filter(lambda s: s != secret),
        ),
        # A known secret under another key's name.
        st.builds(
            lambda iss: jwt.encode(claims(iss=iss), secret, algorithm="HS256"),
            st.text(max_size=20).filter(lambda s: s != key),
        ),
    )
    huge = st.one_of(
        st.text(alphabet=B64 + ".", min_size=4097, max_size=6000),
        st.builds(
            lambda n: jwt.encode(claims(metadata="m" * n), secret, algorithm="HS256"),
            st.integers(3100, 4400),
        ),
    )
    # (null is absent, as in LiveKit: the default.)
    not_bool = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
    wrong_grants = (
        st.builds(
            lambda name, value: hs256(claims(video={"room": room, "roomJoin": True, name: value})),
            st.sampled_from(
                ["roomJoin", "canPublish", "canSubscribe", "canPublishData", "hidden", "roomAdmin"]
            ),
            not_bool,
        )
        | st.builds(
            lambda value: hs256(claims(video={"room": value, "roomJoin": True})),
            st.one_of(
                st.lists(st.just(room), min_size=1, max_size=2),
                st.integers(),
                st.dictionaries(st.just("name"), st.just(room), max_size=1),
            ),
        )
        | st.builds(
            lambda field, value: hs256(claims(**{field: value})),
            st.sampled_from(["sub", "name", "metadata", "video", "iss", "exp", "nbf"]),
            st.one_of(
                st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            ),
        )
        | st.builds(
            lambda field: hs256(claims(**{field: "soon"})),
            st.sampled_from(["exp", "nbf"]),
        )
        | st.builds(
            lambda sources: hs256(
                claims(video={"room": room, "roomJoin": True, "canPublishSources": sources})
            ),
            st.one_of(
                st.text(max_size=5),
                st.lists(st.text(max_size=8), min_size=1, max_size=3).filter(
                    lambda names: not set(names) <= SOURCES
                ),
            ),
        )
        | st.builds(hs256, st.one_of(st.lists(st.integers()), st.text(), st.integers()))
    )
    garbage = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=300)
    return st.one_of(mutated, alg_none, other_algorithm, other_key, huge, wrong_grants, garbage)
