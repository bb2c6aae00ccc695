"""The RTP model in msgspec, for :mod:`sfu_bench.models_bench` only: the same
fields, constraints, defaults and cross-field checks as :mod:`sfu.models`
(except null-as-absent), so that the two are timed on the same work."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

PayloadType = Annotated[int, Meta(ge=0, le=127)]
Ssrc = Annotated[int, Meta(ge=0, le=0xFFFFFFFF)]
ExtensionId = Annotated[int, Meta(ge=1, le=255)]
ClockRate = Annotated[int, Meta(ge=1)]
Channels = Annotated[int, Meta(ge=1, le=255)]
MimeType = Annotated[str, Meta(pattern=r"^(?i:audio|video)/.+$")]
NonEmpty = Annotated[str, Meta(min_length=1)]
Kind = Literal["audio", "video"]
Priority = Literal["very-low", "low", "medium", "high"]
CodecParameters = dict[str, str | int | float]

_AUDIO = re.compile(r"^audio/", re.IGNORECASE)


def _kind_of(mime_type: str) -> str:
    return "audio" if _AUDIO.match(mime_type) else "video"


class _Wire(msgspec.Struct, rename="camel", omit_defaults=False, forbid_unknown_fields=False):
    pass


class RtcpFeedback(_Wire):
    type: NonEmpty
    parameter: str = ""


class RtpCodecCapability(_Wire):
    mime_type: MimeType
    clock_rate: ClockRate
    kind: Kind | UnsetType = UNSET
    preferred_payload_type: PayloadType | UnsetType = UNSET
    channels: Channels | UnsetType = UNSET
    parameters: CodecParameters = {}
    rtcp_feedback: list[RtcpFeedback] = []

    def __post_init__(self) -> None:
        kind = _kind_of(self.mime_type)
        if self.kind is UNSET:
            self.kind = kind  # type: ignore[assignment]
        elif self.kind != kind:
            raise ValueError(f"kind {self.kind!r} does not match mimeType {self.mime_type!r}")
        _default_channels(self, kind)


class RtpHeaderExtension(_Wire):
    kind: Kind
    uri: NonEmpty
    preferred_id: ExtensionId
    preferred_encrypt: bool = False
    direction: Literal["sendrecv", "sendonly", "recvonly", "inactive"] = "sendrecv"


class RtpCapabilities(_Wire):
    codecs: list[RtpCodecCapability] = []
    header_extensions: list[RtpHeaderExtension] = []


class RtpCodecParameters(_Wire):
    mime_type: MimeType
    payload_type: PayloadType
    clock_rate: ClockRate
    channels: Channels | UnsetType = UNSET
    parameters: CodecParameters = {}
    rtcp_feedback: list[RtcpFeedback] = []

    def __post_init__(self) -> None:
        _default_channels(self, _kind_of(self.mime_type))


def _default_channels(codec: Any, kind: str) -> None:
    if kind == "video":
        codec.channels = UNSET
    elif codec.channels is UNSET:
        codec.channels = 1


class RtpHeaderExtensionParameters(_Wire):
    uri: NonEmpty
    id: ExtensionId
    encrypt: bool = False
    parameters: CodecParameters = {}


class RtxParameters(_Wire):
    ssrc: Ssrc


class RtpEncodingParameters(_Wire):
    ssrc: Ssrc | UnsetType = UNSET
    rid: str | UnsetType = UNSET
    codec_payload_type: PayloadType | UnsetType = UNSET
    rtx: RtxParameters | UnsetType = UNSET
    dtx: bool | UnsetType = UNSET
    scalability_mode: str | UnsetType = UNSET
    scale_resolution_down_by: Annotated[float, Meta(ge=0)] | UnsetType = UNSET
    max_bitrate: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    max_framerate: Annotated[float, Meta(ge=0)] | UnsetType = UNSET
    adaptive_ptime: bool | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    network_priority: Priority | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class RtcpParameters(_Wire):
    cname: str | UnsetType = UNSET
    reduced_size: bool = True
    mux: bool | UnsetType = UNSET


class RtpParameters(_Wire):
    codecs: Annotated[list[RtpCodecParameters], Meta(min_length=1)]
    encodings: Annotated[list[RtpEncodingParameters], Meta(min_length=1)]
    mid: str | UnsetType = UNSET
    header_extensions: list[RtpHeaderExtensionParameters] = []
    rtcp: RtcpParameters = msgspec.field(default_factory=RtcpParameters)

    def __post_init__(self) -> None:
        if len({_kind_of(codec.mime_type) for codec in self.codecs}) > 1:
            raise ValueError("codecs mix audio and video codecs")
        if len(self.encodings) > 1 and any(
            e.ssrc is UNSET and e.rid is UNSET for e in self.encodings
        ):
            raise ValueError("with several encodings each needs an ssrc or a rid")


def parse_capabilities(data: dict[str, Any]) -> RtpCapabilities:
    return msgspec.convert(data, RtpCapabilities, strict=True)


def parse_parameters(data: dict[str, Any]) -> RtpParameters:
    return msgspec.convert(data, RtpParameters, strict=True)


def dump(parameters: RtpParameters) -> dict[str, Any]:
    wire: dict[str, Any] = msgspec.to_builtins(parameters)
    return wire
