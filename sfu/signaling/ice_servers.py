"""The ICE servers (STUN/TURN) handed to clients, with coturn REST-API credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

from ..config import IceServerConfig


def turn_rest_credentials(
    secret: str, user: str, ttl: int, now: float | None = None
) -> tuple[str, str]:
    """coturn's TURN REST API: username "<expiry>:<user>", credential base64(HMAC-SHA1)."""
    expiry = int(time.time() if now is None else now) + ttl
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(servers: Sequence[IceServerConfig], peer_id: str) -> list[dict[str, Any]]:
    """RTCIceServer dicts for one peer."""
    result: list[dict[str, Any]] = []
    for server in servers:
        entry: dict[str, Any] = {"urls": list(server.urls)}
        if server.shared_secret:
            entry["username"], entry["credential"] = turn_rest_credentials(
                server.shared_secret, peer_id, server.ttl
            )
        elif server.username:
            entry["username"], entry["credential"] = server.username, server.credential
        result.append(entry)
    return result
