"""The claims of a LiveKit access token, typed: who (``sub``, ``name``,
``metadata``) and what they may do (the ``video`` grants, LiveKit's names and
defaults: publishing, subscribing and data are allowed when absent).

Parsing is strict, as LiveKit's Go server decodes JSON: ``"canPublish": "no"``
is an invalid token, not a truthy string, and ``null`` is absent (the default).
Unknown claims are ignored (LiveKit adds new grants over time: ``sip``,
``agent``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ..models import WireModel

__all__ = ["OPEN_GRANTS", "AccessClaims", "Source", "VideoGrants", "track_source"]

Source = Literal["camera", "microphone", "screen_share", "screen_share_audio"]

# appData.source as mediasoup-demo's clients name it -> LiveKit's track source.
_SOURCES: dict[str, str] = {
    "mic": "microphone",
    "microphone": "microphone",
    "webcam": "camera",
    "camera": "camera",
    "screen": "screen_share",
    "share": "screen_share",
    "screen_share": "screen_share",
    "screen_share_audio": "screen_share_audio",
}


def track_source(kind: str, app_data: Mapping[str, Any]) -> str:
    """The LiveKit source of a producer of ``kind`` with ``app_data``: from
    ``appData.source``, else camera for video and microphone for audio. Screen
    sharing's audio is ``screen_share_audio``."""
    source = _SOURCES.get(str(app_data.get("source", "")))
    if source == "screen_share" and kind == "audio":
        return "screen_share_audio"
    if source is None:
        return "microphone" if kind == "audio" else "camera"
    return source


class _Claims(WireModel):
    """camelCase JSON, strict, null as absent (WireModel's rules), and frozen."""

    model_config = ConfigDict(frozen=True)


class VideoGrants(_Claims):
    """LiveKit's ``video`` grant (livekit/protocol ``auth.VideoGrant``)."""

    room: str = ""
    room_join: bool = False
    room_admin: bool = False
    room_create: bool = False
    room_list: bool = False
    room_record: bool = False
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    # Empty: every source.
    can_publish_sources: list[Source] = Field(default_factory=list)
    hidden: bool = False

    def publish_refusal(self, kind: str, app_data: Mapping[str, Any]) -> str | None:
        """Why a producer of ``kind`` with ``app_data`` may not be published, or None."""
        if self.hidden:
            return "a hidden participant may not publish"
        if not self.can_publish:
            return "this token does not allow publishing (canPublish: false)"
        source = track_source(kind, app_data)
        if self.can_publish_sources and source not in self.can_publish_sources:
            allowed = ", ".join(self.can_publish_sources)
            return f"this token does not allow publishing {source} (canPublishSources: {allowed})"
        return None

    def data_refusal(self) -> str | None:
        """Why data may not be published, or None."""
        if self.hidden:
            return "a hidden participant may not publish data"
        if not self.can_publish_data:
            return "this token does not allow publishing data (canPublishData: false)"
        return None


# A peer of an open server (no keys): everything LiveKit allows by default.
OPEN_GRANTS = VideoGrants()


class AccessClaims(_Claims):
    """A verified token's claims (``exp``/``nbf`` are checked by the verifier)."""

    iss: str
    sub: str = ""
    exp: float
    nbf: float | None = None
    name: str = ""
    metadata: str = ""
    video: VideoGrants = OPEN_GRANTS
