"""Verifying LiveKit access tokens against the configured keys, and minting them.

A token is a JWT signed with HS256 by the secret of the API key named in its
``iss`` (livekit/protocol ``auth.ParseAPIToken`` and ``APIKeyTokenVerifier``).
``exp`` is required, ``nbf`` honoured, both with LiveKit's leeway of a minute.
Anything else (``alg: none``, RS256, a key we do not know, a bad signature,
claims of the wrong type) is a :class:`TokenRefusal` with HTTP status 401.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt
from pydantic import ValidationError

from .claims import AccessClaims, VideoGrants

__all__ = [
    "LEEWAY_SECONDS",
    "MAX_TOKEN_BYTES",
    "REFUSAL_REASONS",
    "TokenRefusal",
    "TokenVerifier",
    "mint_token",
]

LEEWAY_SECONDS = 60
# Far above any real token (LiveKit's are a few hundred bytes); bounds the work
# a hostile one costs.
MAX_TOKEN_BYTES = 4096
ALGORITHM = "HS256"

# Every reason a WebSocket upgrade is refused for (the metrics label), by status.
REFUSAL_REASONS: dict[str, int] = {
    "no_token": 401,
    "malformed_token": 401,
    "unknown_key": 401,
    "bad_signature": 401,
    "expired": 401,
    "not_yet_valid": 401,
    "invalid_claims": 401,
    "no_room_join": 403,
    "wrong_room": 403,
    "wrong_identity": 403,
}


class TokenRefusal(Exception):
    """Why a token does not admit its bearer; ``status`` is the HTTP status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = REFUSAL_REASONS[reason]
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body of the refused upgrade."""
        error = "unauthorized" if self.status == 401 else "forbidden"
        return {"error": error, "reason": self.reason, "message": self.message}


class TokenVerifier:
    """Verifies tokens signed by any of ``keys`` (API key -> secret)."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = dict(keys)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid ``token``; :class:`TokenRefusal` otherwise."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRefusal("malformed_token", f"the token is over {MAX_TOKEN_BYTES} bytes")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise TokenRefusal("malformed_token", f"not a JWT: {error}") from None
        issuer = unverified.get("iss")
        secret = self._keys.get(issuer) if isinstance(issuer, str) else None
        if secret is None:
            raise TokenRefusal("unknown_key", "the token's iss names no API key of this server")
        try:
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp"], "verify_aud": False, "verify_iat": False},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefusal("expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefusal("not_yet_valid", "the token is not valid yet (nbf)") from None
        except jwt.InvalidSignatureError:
            raise TokenRefusal("bad_signature", "the token's signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRefusal("malformed_token", f"only {ALGORITHM} tokens are accepted") from None
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise TokenRefusal("malformed_token", f"invalid token: {error}") from None
        try:
            return AccessClaims.model_validate(payload)
        except ValidationError as error:
            where = ".".join(str(part) for part in error.errors()[0]["loc"])
            raise TokenRefusal("invalid_claims", f"invalid claim {where or '(payload)'}") from None


def mint_token(
    api_key: str,
    secret: str,
    *,
    identity: str,
    grants: VideoGrants,
    ttl: float,
    name: str = "",
    metadata: str = "",
) -> str:
    """A token as ``livekit-api``'s ``AccessToken`` makes it (``nbf`` now,
    ``exp`` after ``ttl`` seconds), grants that differ from the defaults only."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "nbf": now,
        "exp": now + int(ttl),
        "video": grants.model_dump(by_alias=True, exclude_defaults=True),
    }
    if name:
        claims["name"] = name
    if metadata:
        claims["metadata"] = metadata
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
