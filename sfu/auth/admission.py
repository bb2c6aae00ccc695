"""Whether a WebSocket upgrade may join its room: the token (``access_token``
query parameter or ``Authorization: Bearer``), verified, then matched against
the room and peer asked for. Refusals are :class:`~.tokens.TokenRefusal`:
401 for no or a bad token, 403 for a good one that does not fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .claims import AccessClaims, VideoGrants
from .tokens import TokenRefusal, TokenVerifier

__all__ = ["Admission", "admit", "token_from"]


@dataclass(frozen=True)
class Admission:
    peer_id: str
    grants: VideoGrants
    # None on an open server (no keys): nobody brings a token.
    claims: AccessClaims | None = None

    @property
    def name(self) -> str:
        """The token's ``name``: the peer's displayName when given."""
        return self.claims.name if self.claims is not None else ""

    @property
    def metadata(self) -> str:
        return self.claims.metadata if self.claims is not None else ""


def token_from(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The bearer's token: the ``access_token`` query parameter, else the
    ``Authorization: Bearer`` header."""
    token = query.get("access_token")
    if token:
        return token
    scheme, _, credentials = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def admit(verifier: TokenVerifier, token: str | None, room_id: str, peer_id: str) -> Admission:
    """Who joins ``room_id`` with ``token`` (as ``peer_id``, or the token's
    ``sub`` when ``peer_id`` is empty), or :class:`TokenRefusal`."""
    if token is None:
        raise TokenRefusal(
            "no_token", "an access token is required (access_token or Authorization: Bearer)"
        )
    claims = verifier.verify(token)
    grants = claims.video
    if not grants.room_join:
        raise TokenRefusal("no_room_join", "the token does not allow joining rooms (roomJoin)")
    if grants.room != room_id:
        raise TokenRefusal("wrong_room", "the token is for another room")
    if not claims.sub:
        raise TokenRefusal("wrong_identity", "the token names no identity (sub)")
    if peer_id and peer_id != claims.sub:
        raise TokenRefusal("wrong_identity", "the token is for another peerId (sub)")
    return Admission(claims.sub, grants, claims)
