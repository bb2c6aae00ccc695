"""mediasoup's RTP model as typed classes: RtpCapabilities, RtpParameters and
their parts (``RtpParameters.ts`` in mediasoup v3).

Attributes are snake_case; camelCase lives only at the wire. Parse a wire dict
once at the edge with :meth:`WireModel.from_wire` (or pydantic's
``model_validate``) and write one back with :meth:`WireModel.to_wire`::

    params = RtpParameters.from_wire(request["rtpParameters"])
    params.codecs[0].payload_type            # 96
    consumer_params.to_wire()                # {"codecs": [{"mimeType": ...}], ...}

Parsing is strict (a string where a number belongs is an error, never
converted) and fills in mediasoup's defaults, as its ``ortc.validate*`` do:
codec ``parameters`` {} and ``rtcpFeedback`` [], audio ``channels`` 1 (video
codecs have none), feedback ``parameter`` "", header extension
``preferredEncrypt``/``encrypt`` false and ``direction`` "sendrecv", RTCP
``reducedSize`` true. JSON null means absent. Optional fields left unset are
left out of :meth:`~WireModel.to_wire`, as mediasoup leaves them out. Keys
mediasoup does not define are dropped.

A bad value raises :class:`~sfu.errors.InvalidRequestError` (protoo errorCode
400) whose message names the field, e.g.
``rtpParameters.codecs[0].payloadType 128 is out of range [0, 127]``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from sfu.errors import InvalidRequestError

from .validation import field_path, first_error, invalid, type_name

MediaKind = Literal["audio", "video"]
RtpHeaderExtensionDirection = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
Priority = Literal["very-low", "low", "medium", "high"]

_MIME_RE = re.compile(r"^(audio|video)/(.+)$", re.IGNORECASE)


# --------------------------------------------------------------------------- checks


def _in_range(lo: int, hi: int | None = None) -> AfterValidator:
    def check(value: int) -> int:
        if hi is None and value < lo:
            raise invalid(f"{value} is out of range (at least {lo})")
        if hi is not None and not lo <= value <= hi:
            raise invalid(f"{value} is out of range [{lo}, {hi}]")
        return value

    return AfterValidator(check)


def _not_negative(value: float) -> float:
    if value < 0:
        raise invalid(f"must not be negative, got {value!r}")
    return value


def _non_empty_string(value: str) -> str:
    if not value:
        raise invalid("must be a non-empty string")
    return value


def _non_empty_list(value: list[Any]) -> list[Any]:
    if not value:
        raise invalid("must be a non-empty list")
    return value


def _mime_type(value: str) -> str:
    if _MIME_RE.match(value) is None:
        raise invalid(f"must be a string like 'audio/opus', got {value!r}")
    return value


def _codec_parameters(value: dict[str, Any]) -> dict[str, Any]:
    for key, param in value.items():
        # bool is an int subclass: true is not a number here.
        if isinstance(param, bool) or not isinstance(param, str | int | float):
            raise invalid(f"[{key!r}] must be a string or a number, got {param!r}")
    if "apt" in value and (isinstance(value["apt"], bool) or not isinstance(value["apt"], int)):
        raise invalid("['apt'] must be an integer payload type")
    return value


PayloadType = Annotated[int, _in_range(0, 127)]
Ssrc = Annotated[int, _in_range(0, 0xFFFFFFFF)]
HeaderExtensionId = Annotated[int, _in_range(1, 255)]
ClockRate = Annotated[int, _in_range(1)]
Channels = Annotated[int, _in_range(1, 255)]
MimeType = Annotated[str, AfterValidator(_mime_type)]
NonEmptyString = Annotated[str, AfterValidator(_non_empty_string)]
# Codec (fmtp) parameters: sdp-transform turns numeric-looking values into numbers.
CodecParameters = Annotated[dict[str, Any], AfterValidator(_codec_parameters)]


def _kind_of_mime(mime_type: str) -> MediaKind:
    return "audio" if mime_type[:6].lower() == "audio/" else "video"


# --------------------------------------------------------------------------- base


def describe_error(error: ValidationError, root: str) -> str:
    """A pydantic error as one protoo error reason naming the field, worded as
    the signalling layer words its own (``... must be an integer, got '96'``)."""
    found = first_error(error)
    where = field_path(root, found.loc)
    if found.is_custom:
        # "[key] ..." continues the path; anything else is a sentence about it.
        separator = "" if found.message.startswith("[") else " "
        return f"{where}{separator}{found.message}"
    if found.type == "missing":
        return f"missing {where}"
    if found.type == "literal_error":
        return f"{where} must be {found.context['expected']}, got {found.input!r}"
    expected = _EXPECTED.get(found.type)
    if expected is not None:
        value = found.input
        shown = repr(value) if isinstance(value, str | int | float | None) else type_name(value)
        return f"{where} must be {expected}, got {shown}"
    return f"{where}: {found.message}"


# pydantic's error types (strict mode) -> what the field wants.
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "a list",
}


class WireModel(BaseModel):
    """A mediasoup dictionary: snake_case here, camelCase on the wire."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        strict=True,
        extra="ignore",
    )

    # The name of the whole value in error messages ("rtpParameters.codecs[0]...").
    wire_name: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # As mediasoup: an optional field sent as null is unset (and gets its default).
        if isinstance(data, dict) and None in data.values():
            return {key: value for key, value in data.items() if value is not None}
        return data

    @classmethod
    def from_wire(cls, data: object, where: str | None = None) -> Self:
        """Parse a camelCase dict from a request; a bad value raises
        InvalidRequestError naming it under ``where`` (default: the type's wire name)."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            root = cls.wire_name if where is None else where
            raise InvalidRequestError(describe_error(error, root)) from None

    def to_wire(self) -> dict[str, Any]:
        """mediasoup's camelCase dict; optional fields left unset are left out."""
        return self.model_dump(by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- capabilities


class RtcpFeedback(WireModel):
    type: NonEmptyString
    parameter: str = ""


class _Codec(WireModel):
    """What a codec capability and a codec in use have in common."""

    wire_name = "codec"

    mime_type: MimeType
    clock_rate: ClockRate
    channels: Channels | None = None
    parameters: CodecParameters = {}
    rtcp_feedback: list[RtcpFeedback] = []

    @property
    def is_rtx(self) -> bool:
        return self.mime_type.lower().endswith("/rtx")

    @model_validator(mode="after")
    def _default_channels(self) -> Self:
        # As mediasoup: audio has 1 channel unless told otherwise; video has none.
        if _kind_of_mime(self.mime_type) == "video":
            self.channels = None
        elif self.channels is None:
            self.channels = 1
        return self


class RtpCodecCapability(_Codec):
    """A codec a router or a device can send or receive (with its preferred PT)."""

    kind: MediaKind
    preferred_payload_type: PayloadType | None = None

    @model_validator(mode="before")
    @classmethod
    def _kind_from_mime_type(cls, data: Any) -> Any:
        # kind may be left out: the mimeType says it.
        if isinstance(data, dict) and data.get("kind") is None:
            mime = data.get("mimeType", data.get("mime_type"))
            if isinstance(mime, str) and _MIME_RE.match(mime):
                return {**data, "kind": _kind_of_mime(mime)}
        return data

    @model_validator(mode="after")
    def _kind_matches_mime_type(self) -> Self:
        if self.kind != _kind_of_mime(self.mime_type):
            raise invalid(f"{self.kind!r} does not match mimeType {self.mime_type!r}", field="kind")
        return self


class RtpHeaderExtension(WireModel):
    """A header extension a router or a device supports (capability)."""

    wire_name = "headerExtension"

    kind: MediaKind
    uri: NonEmptyString
    preferred_id: HeaderExtensionId
    preferred_encrypt: bool = False
    direction: RtpHeaderExtensionDirection = "sendrecv"


class RtpCapabilities(WireModel):
    """What a router offers, or what a device can receive (the ``join`` request)."""

    wire_name = "rtpCapabilities"

    codecs: list[RtpCodecCapability] = []
    header_extensions: list[RtpHeaderExtension] = []
    # Older mediasoup(-client)s and pymediasoup still send it (an empty list).
    fec_mechanisms: list[str] | None = None


# --------------------------------------------------------------------------- parameters


class RtpCodecParameters(_Codec):
    """A codec in use on one stream, with its payload type."""

    payload_type: PayloadType

    @property
    def kind(self) -> MediaKind:
        return _kind_of_mime(self.mime_type)


class RtpHeaderExtensionParameters(WireModel):
    """A header extension in use on one stream, with its id."""

    wire_name = "headerExtension"

    uri: NonEmptyString
    id: HeaderExtensionId
    encrypt: bool = False
    parameters: CodecParameters = {}


class RtxParameters(WireModel):
    ssrc: Ssrc


class RtpEncodingParameters(WireModel):
    """One RTP stream (and its RTX stream) of a producer or a consumer."""

    wire_name = "encoding"

    ssrc: Ssrc | None = None
    rid: str | None = None
    codec_payload_type: PayloadType | None = None
    rtx: RtxParameters | None = None
    # Unset means false (mediasoup's default); kept unset so wire dicts round-trip.
    dtx: bool | None = None
    scalability_mode: str | None = None
    scale_resolution_down_by: Annotated[float, AfterValidator(_not_negative)] | None = None
    max_bitrate: Annotated[int, _in_range(0)] | None = None
    max_framerate: Annotated[float, AfterValidator(_not_negative)] | None = None
    adaptive_ptime: bool | None = None
    priority: Priority | None = None
    network_priority: Priority | None = None
    # Not in mediasoup's type, but mediasoup-client's Transport.produce() sends
    # it on every encoding it is given (simulcast), and mediasoup keeps it.
    active: bool | None = None


class RtcpParameters(WireModel):
    cname: str | None = None
    reduced_size: bool = True
    mux: bool | None = None


class RtpParameters(WireModel):
    """A producer's stream as the client sends it (``produce``), or a consumer's
    stream as the server sends it (``newConsumer``)."""

    wire_name = "rtpParameters"

    mid: str | None = None
    codecs: Annotated[list[RtpCodecParameters], AfterValidator(_non_empty_list)]
    header_extensions: list[RtpHeaderExtensionParameters] = []
    encodings: Annotated[list[RtpEncodingParameters], AfterValidator(_non_empty_list)]
    rtcp: RtcpParameters = Field(default_factory=RtcpParameters)

    @property
    def kind(self) -> MediaKind:
        return self.codecs[0].kind

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len({codec.kind for codec in self.codecs}) > 1:
            raise invalid("mix audio and video codecs", field="codecs")
        if len(self.encodings) > 1 and any(
            encoding.ssrc is None and encoding.rid is None for encoding in self.encodings
        ):
            raise invalid("with several encodings each needs an ssrc or a rid", field="encodings")
        return self
