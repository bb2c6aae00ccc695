"""ORTC rules: mediasoup's ``ortc.ts`` in Python, on the typed RTP model.

Everything here works on :mod:`sfu.models` objects (RtpCapabilities,
RtpParameters, RtpMapping, ...); camelCase dicts exist only at the wire, where
a client's input is parsed (``validate_*``) and where results are sent
(``to_wire()``).

The flow, as in mediasoup:

1. ``generate_router_rtp_capabilities(media_codecs)`` once per Router.
2. On ``produce``: ``validate_rtp_parameters`` the client's parameters, then
   ``get_producer_rtp_parameters_mapping`` (client PTs/ext ids/SSRCs -> router's)
   and ``get_consumable_rtp_parameters`` (the Producer's stream in router terms).
3. On ``join``: ``validate_rtp_capabilities`` the client's ``rtpCapabilities``
   (once: the edge); on ``consume``: ``can_consume`` and
   ``get_consumer_rtp_parameters`` against them.

Deviations from mediasoup (on purpose):
- Only the feedback and header extensions this server implements are offered:
  no transport-cc, no transport-wide-cc extension; mid is ``sendrecv`` (consumers send their own MID); rid/rrid are ``recvonly``.
- The mapping also maps header extension ids (``header_extensions``).
- A consumer codec's rtcpFeedback is the remote's, limited to what the router
  offers for that codec, so a client never negotiates feedback we don't send.
- Validation is stricter: a value of the wrong type is an error, not coerced.
"""

from __future__ import annotations

import random
import re
from typing import Any

import h264_profile_level_id as h264

from ..errors import InvalidRequestError, UnsupportedError
from ..models import (
    RtcpFeedback,
    RtcpParameters,
    RtpCapabilities,
    RtpCodecCapability,
    RtpCodecParameters,
    RtpEncodingParameters,
    RtpHeaderExtension,
    RtpHeaderExtensionParameters,
    RtpMapping,
    RtpMappingCodec,
    RtpMappingEncoding,
    RtpMappingHeaderExtension,
    RtpParameters,
    RtxParameters,
)
from ..models.rtp_uris import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_RID,
    URI_RRID,
    URI_TOFFSET,
    URI_TRANSPORT_WIDE_CC,
    URI_VIDEO_ORIENTATION,
)

Codec = RtpCodecCapability | RtpCodecParameters

_SCALABILITY_RE = re.compile(r"^[LS]([1-9][0-9]?)T([1-9][0-9]?)(_KEY)?(_SHIFT)?$")

# Same order as mediasoup: 100..127 first, then 96..99.
_DYNAMIC_PAYLOAD_TYPES = [*range(100, 128), *range(96, 100)]

# The feedback the server implements, and nothing more: a router that offers
# transport-cc or goog-remb but never sends it keeps Chrome's video bitrate low.
_VIDEO_RTCP_FEEDBACK = (
    RtcpFeedback(type="nack"),
    RtcpFeedback(type="nack", parameter="pli"),
    RtcpFeedback(type="ccm", parameter="fir"),
    RtcpFeedback(type="goog-remb"),
)

# The codecs a Router may be configured with. PCMU/PCMA keep their static PTs.
_SUPPORTED_CODECS = (
    RtpCodecCapability(kind="audio", mime_type="audio/opus", clock_rate=48000, channels=2),
    RtpCodecCapability(
        kind="audio", mime_type="audio/PCMU", clock_rate=8000, preferred_payload_type=0
    ),
    RtpCodecCapability(
        kind="audio", mime_type="audio/PCMA", clock_rate=8000, preferred_payload_type=8
    ),
    RtpCodecCapability(kind="video", mime_type="video/VP8", clock_rate=90000),
    RtpCodecCapability(kind="video", mime_type="video/VP9", clock_rate=90000),
    RtpCodecCapability(
        kind="video",
        mime_type="video/H264",
        clock_rate=90000,
        parameters={"level-asymmetry-allowed": 1},
    ),
)


def _ext(kind: str, uri: str, ext_id: int, direction: str) -> RtpHeaderExtension:
    return RtpHeaderExtension.model_validate(
        {"kind": kind, "uri": uri, "preferredId": ext_id, "direction": direction}
    )


# mid/rid/rrid are only received: the server demuxes with them but does not
# write them into forwarded packets, so consumers never negotiate them.
_SUPPORTED_HEADER_EXTENSIONS = (
    # mid is sendrecv, as in mediasoup: consumers put their own MID on RTX
    # packets, which aiortc routes by MID (it does not register RTX SSRCs).
    _ext("audio", URI_MID, 1, "sendrecv"),
    _ext("video", URI_MID, 1, "sendrecv"),
    _ext("video", URI_RID, 2, "recvonly"),
    _ext("video", URI_RRID, 3, "recvonly"),
    _ext("audio", URI_ABS_SEND_TIME, 4, "sendrecv"),
    _ext("video", URI_ABS_SEND_TIME, 4, "sendrecv"),
    _ext("audio", URI_AUDIO_LEVEL, 10, "sendrecv"),
    _ext("video", URI_VIDEO_ORIENTATION, 11, "sendrecv"),
    _ext("video", URI_TOFFSET, 12, "sendrecv"),
)


# ---------------------------------------------------------------------------
# Router capabilities
# ---------------------------------------------------------------------------


def generate_router_rtp_capabilities(media_codecs: object) -> RtpCapabilities:
    """Build the Router's RtpCapabilities from RouterOptions.mediaCodecs (wire dicts).

    Raises InvalidRequestError for malformed codecs and UnsupportedError for
    codecs this server cannot forward.
    """
    if not isinstance(media_codecs, list):
        raise InvalidRequestError("mediaCodecs must be a list")
    configured = [
        RtpCodecCapability.from_wire(media_codec, where=f"mediaCodecs[{index}]")
        for index, media_codec in enumerate(media_codecs)
    ]
    # Explicit preferredPayloadTypes are reserved first, so that a dynamic PT
    # handed out earlier (e.g. to an RTX codec) never collides with them.
    reserved = {codec.preferred_payload_type for codec in configured}
    free_pts = [pt for pt in _DYNAMIC_PAYLOAD_TYPES if pt not in reserved]

    codecs: list[RtpCodecCapability] = []
    for index, media_codec in enumerate(configured):
        codec = _router_codec(media_codec, free_pts)
        if any(c.preferred_payload_type == codec.preferred_payload_type for c in codecs):
            raise InvalidRequestError(
                f"mediaCodecs[{index}] ({codec.mime_type}): duplicated "
                f"preferredPayloadType {codec.preferred_payload_type}"
            )
        codecs.append(codec)
        if codec.kind == "video":
            codecs.append(_rtx_codec(codec, _take_pt(free_pts)))
    return RtpCapabilities(
        codecs=codecs,
        header_extensions=[ext.model_copy() for ext in _SUPPORTED_HEADER_EXTENSIONS],
    )


def _router_codec(media_codec: RtpCodecCapability, free_pts: list[int]) -> RtpCodecCapability:
    """The supported codec matching ``media_codec``, with its PT and parameters."""
    supported = next((s for s in _SUPPORTED_CODECS if _match_codecs(media_codec, s)), None)
    if supported is None:
        raise UnsupportedError(
            f"media codec not supported [mimeType:{media_codec.mime_type}, "
            f"clockRate:{media_codec.clock_rate}, channels:{media_codec.channels}]"
        )
    payload_type = media_codec.preferred_payload_type
    if payload_type is None:
        payload_type = supported.preferred_payload_type
    if payload_type is None:
        payload_type = _take_pt(free_pts)
    feedback = _VIDEO_RTCP_FEEDBACK if supported.kind == "video" else ()
    return supported.model_copy(
        update={
            "preferred_payload_type": payload_type,
            # The configured parameters (profile-id, profile-level-id, ...) win.
            "parameters": {**supported.parameters, **media_codec.parameters},
            "rtcp_feedback": [fb.model_copy() for fb in feedback],
        }
    )


def _rtx_codec(media_codec: RtpCodecCapability, pt: int) -> RtpCodecCapability:
    return RtpCodecCapability(
        kind=media_codec.kind,
        mime_type=f"{media_codec.kind}/rtx",
        preferred_payload_type=pt,
        clock_rate=media_codec.clock_rate,
        parameters={"apt": media_codec.preferred_payload_type},
    )


def _take_pt(free_pts: list[int]) -> int:
    if not free_pts:
        raise UnsupportedError("cannot allocate more dynamic codec payload types")
    return free_pts.pop(0)


# ---------------------------------------------------------------------------
# Validation: the typed model parses a client's wire dicts, fills in
# mediasoup's defaults and names the bad field.
# ---------------------------------------------------------------------------


def validate_rtp_capabilities(caps: object) -> RtpCapabilities:
    """A device's RtpCapabilities (``join``), parsed; InvalidRequestError names a bad field."""
    return RtpCapabilities.from_wire(caps)


def validate_rtp_parameters(params: object) -> RtpParameters:
    """produce()'s RtpParameters, parsed; InvalidRequestError names a bad field."""
    return RtpParameters.from_wire(params)


# ---------------------------------------------------------------------------
# Codec matching
# ---------------------------------------------------------------------------


def _param(codec: Codec, key: str, default: object) -> str:
    # sdp-transform turns numeric-looking values into numbers: compare as text.
    value = codec.parameters.get(key)
    return str(default if value is None or value == "" else value)


def _h264_params(codec: Codec) -> dict[str, Any]:
    params = dict(codec.parameters)
    if "profile-level-id" in params:
        params["profile-level-id"] = str(params["profile-level-id"])
    return params


def _match_codecs(a: Codec, b: Codec, strict: bool = False, modify: bool = False) -> bool:
    """mediasoup's matchCodecs. With ``modify``, ``a``'s H264 profile-level-id
    becomes the negotiated one (what the Router will forward)."""
    mime = a.mime_type.lower()
    if mime != b.mime_type.lower() or a.clock_rate != b.clock_rate:
        return False
    if a.channels != b.channels:
        return False
    if not strict:
        return True
    if mime == "video/vp9":
        return _param(a, "profile-id", 0) == _param(b, "profile-id", 0)
    if mime == "video/h264":
        return _match_h264(a, b, modify)
    return True


def _match_h264(a: Codec, b: Codec, modify: bool) -> bool:
    if _param(a, "packetization-mode", 0) != _param(b, "packetization-mode", 0):
        return False
    a_params, b_params = _h264_params(a), _h264_params(b)
    try:
        if not h264.isSameProfile(a_params, b_params):
            return False
        selected = h264.generateProfileLevelIdForAnswer(a_params, b_params)
    except (TypeError, ValueError):  # invalid or mismatching profile-level-id
        return False
    if modify:
        if selected:
            a.parameters["profile-level-id"] = selected
        else:
            a.parameters.pop("profile-level-id", None)
    return True


# ---------------------------------------------------------------------------
# Producer side
# ---------------------------------------------------------------------------


def get_producer_rtp_parameters_mapping(
    rtp_parameters: RtpParameters, router_caps: RtpCapabilities
) -> RtpMapping:
    """Map a Producer's PTs, SSRCs and header extension ids onto the Router's.

    As in mediasoup, an H264 codec's profile-level-id in ``rtp_parameters`` is
    set to the negotiated one. Raises UnsupportedError if a codec has no router match,
    InvalidRequestError for encodings that are not simulcast layers the server takes.
    """
    _check_layers(rtp_parameters.encodings)
    router_codec_for: list[tuple[RtpCodecParameters, RtpCodecCapability]] = []
    for codec in rtp_parameters.codecs:
        if codec.is_rtx:
            continue
        cap = next(
            (
                c
                for c in router_caps.codecs
                if not c.is_rtx and _match_codecs(codec, c, strict=True, modify=True)
            ),
            None,
        )
        if cap is None:
            raise UnsupportedError(
                f"unsupported codec [mimeType:{codec.mime_type}, "
                f"payloadType:{codec.payload_type}]: the router does not offer it"
            )
        router_codec_for.append((codec, cap))
    if not router_codec_for:
        raise UnsupportedError("rtpParameters.codecs has no media codec")
    for codec in rtp_parameters.codecs:
        if codec.is_rtx:
            router_codec_for.append((codec, _router_rtx_for(codec, router_codec_for, router_caps)))
    return RtpMapping(
        codecs=[
            RtpMappingCodec(payload_type=c.payload_type, mapped_payload_type=_preferred_pt(cap))
            for c, cap in router_codec_for
        ],
        encodings=_map_encodings(rtp_parameters.encodings),
        header_extensions=_map_header_extensions(rtp_parameters, router_caps),
    )


MAX_SIMULCAST_LAYERS = 3


def _check_layers(encodings: list[RtpEncodingParameters]) -> None:
    """Several encodings are simulcast layers: at most three, each named by a
    distinct rid or a distinct ssrc (the worker finds a packet's layer by them)."""
    if len(encodings) <= 1:
        return
    if len(encodings) > MAX_SIMULCAST_LAYERS:
        raise InvalidRequestError(
            f"rtpParameters.encodings: {len(encodings)} simulcast layers, "
            f"at most {MAX_SIMULCAST_LAYERS} are supported"
        )
    rids = [e.rid for e in encodings]
    ssrcs = [e.ssrc for e in encodings]
    by_rid = all(rids) and len(set(rids)) == len(rids)
    by_ssrc = all(ssrcs) and len(set(ssrcs)) == len(ssrcs)
    if not (by_rid or by_ssrc):
        raise InvalidRequestError(
            "rtpParameters.encodings: each simulcast layer needs a distinct rid or a distinct ssrc"
        )


def _preferred_pt(cap: RtpCodecCapability) -> int:
    # A router codec always has one (generate_router_rtp_capabilities gives it).
    assert cap.preferred_payload_type is not None
    return cap.preferred_payload_type


def _router_rtx_for(
    rtx: RtpCodecParameters,
    mapped: list[tuple[RtpCodecParameters, RtpCodecCapability]],
    router_caps: RtpCapabilities,
) -> RtpCodecCapability:
    """The Router's RTX codec for the media codec that ``rtx``'s apt points to."""
    apt = rtx.parameters.get("apt")
    cap_media = next((cap for c, cap in mapped if c.payload_type == apt), None)
    if cap_media is None:
        raise InvalidRequestError(
            f"rtpParameters: RTX codec with payloadType {rtx.payload_type} has apt={apt!r}, "
            "which is not one of its media codecs"
        )
    cap_rtx = _router_rtx_of(router_caps, _preferred_pt(cap_media))
    if cap_rtx is None:
        raise UnsupportedError(
            f"the router has no RTX codec for {cap_media.mime_type} "
            f"(payloadType {cap_media.preferred_payload_type})"
        )
    return cap_rtx


def _router_rtx_of(caps: RtpCapabilities, media_pt: int) -> RtpCodecCapability | None:
    return next((c for c in caps.codecs if c.is_rtx and c.parameters.get("apt") == media_pt), None)


def _map_encodings(encodings: list[RtpEncodingParameters]) -> list[RtpMappingEncoding]:
    # Consecutive SSRCs from one random base, as mediasoup does.
    base = random.randint(1, 0xFFFFFFFF - len(encodings))
    return [
        RtpMappingEncoding(
            ssrc=encoding.ssrc,
            rid=encoding.rid,
            scalability_mode=encoding.scalability_mode,
            mapped_ssrc=base + i,
        )
        for i, encoding in enumerate(encodings)
    ]


def _map_header_extensions(
    params: RtpParameters, router_caps: RtpCapabilities
) -> list[RtpMappingHeaderExtension]:
    """Client ext id -> router ext id, for extensions the router receives.
    Extensions the router does not know are left out: the server ignores them."""
    kind = params.kind
    mapped = []
    for ext in params.header_extensions:
        cap = next(
            (
                c
                for c in router_caps.header_extensions
                if c.kind == kind and c.uri == ext.uri and c.direction in ("sendrecv", "recvonly")
            ),
            None,
        )
        if cap is not None:
            mapped.append(
                RtpMappingHeaderExtension(id=ext.id, mapped_id=cap.preferred_id, uri=ext.uri)
            )
    return mapped


def get_consumable_rtp_parameters(
    kind: str, params: RtpParameters, caps: RtpCapabilities, mapping: RtpMapping
) -> RtpParameters:
    """The Producer's stream as the Router forwards it: router PTs, router ext ids,
    mapped SSRCs. Consumers' parameters are derived from this."""
    codecs: list[RtpCodecParameters] = []
    for codec in params.codecs:
        if codec.is_rtx:
            continue
        if codec.kind != kind:
            raise InvalidRequestError(f"codec {codec.mime_type} is not of kind {kind!r}")
        cap = _router_codec_by_pt(caps, _mapped_pt(mapping, codec.payload_type))
        codecs.append(_consumable_codec(cap, parameters=codec.parameters))
        cap_rtx = _router_rtx_of(caps, _preferred_pt(cap))
        if cap_rtx is not None:
            codecs.append(_consumable_codec(cap_rtx, parameters=cap_rtx.parameters))

    # Only extensions the Router can write into forwarded packets.
    header_extensions = [
        RtpHeaderExtensionParameters(
            uri=ext.uri, id=ext.preferred_id, encrypt=ext.preferred_encrypt
        )
        for ext in caps.header_extensions
        if ext.kind == kind and ext.direction in ("sendrecv", "sendonly")
    ]
    return RtpParameters(
        codecs=codecs,
        header_extensions=header_extensions,
        encodings=_consumable_encodings(params.encodings, mapping.encodings),
        rtcp=RtcpParameters(cname=params.rtcp.cname or None),
    )


def _mapped_pt(mapping: RtpMapping, payload_type: int) -> int:
    entry = next((e for e in mapping.codecs if e.payload_type == payload_type), None)
    if entry is None:
        raise InvalidRequestError(f"no mapping for payloadType {payload_type}")
    return entry.mapped_payload_type


def _router_codec_by_pt(caps: RtpCapabilities, pt: int) -> RtpCodecCapability:
    cap = next((c for c in caps.codecs if c.preferred_payload_type == pt), None)
    if cap is None:
        raise InvalidRequestError(f"the router has no codec with payloadType {pt}")
    return cap


def _consumable_codec(cap: RtpCodecCapability, parameters: dict[str, Any]) -> RtpCodecParameters:
    return RtpCodecParameters(
        mime_type=cap.mime_type,
        payload_type=_preferred_pt(cap),
        clock_rate=cap.clock_rate,
        channels=cap.channels,
        parameters=dict(parameters),
        rtcp_feedback=[fb.model_copy() for fb in cap.rtcp_feedback],
    )


def _consumable_encodings(
    encodings: list[RtpEncodingParameters], mapped: list[RtpMappingEncoding]
) -> list[RtpEncodingParameters]:
    if len(mapped) != len(encodings):
        raise InvalidRequestError("the mapping does not match rtpParameters.encodings")
    # rid/rtx/codecPayloadType describe the producer's wire, not the router's.
    return [
        encoding.model_copy(
            update={"ssrc": entry.mapped_ssrc, "rid": None, "rtx": None, "codec_payload_type": None}
        )
        for encoding, entry in zip(encodings, mapped, strict=True)
    ]


# ---------------------------------------------------------------------------
# Consumer side
# ---------------------------------------------------------------------------


def can_consume(consumable_params: RtpParameters, caps: RtpCapabilities) -> bool:
    """Whether a client with RtpCapabilities ``caps`` can receive the stream.

    ``caps`` come from ``validate_rtp_capabilities``: a client's are validated
    once, at the edge (the room, when the peer joins), not on every consume.
    """
    # Same codec selection as get_consumer_rtp_parameters, so the two agree even
    # when a producer has several media codecs (mediasoup only checks the first).
    codecs = _consumer_codecs(consumable_params.codecs, caps.codecs)
    return bool(codecs) and not codecs[0].is_rtx


def get_consumer_rtp_parameters(
    consumable_params: RtpParameters, remote_rtp_capabilities: RtpCapabilities
) -> RtpParameters:
    """RtpParameters for one Consumer: the remote's codecs, header extensions in
    common, reduced RTCP feedback, and a single encoding with fresh SSRCs.

    ``mid`` is left unset: the transport assigns it. ``remote_rtp_capabilities``
    come from ``validate_rtp_capabilities`` (see can_consume). Raises
    UnsupportedError if no media codec matches.
    """
    remote = remote_rtp_capabilities
    codecs = _consumer_codecs(consumable_params.codecs, remote.codecs)
    if not codecs or codecs[0].is_rtx:
        raise UnsupportedError(
            "no compatible media codecs: the consumer's rtpCapabilities "
            "do not include the producer's codec"
        )
    header_extensions = _consumer_header_extensions(consumable_params, remote)
    _reduce_rtcp_feedback(codecs, header_extensions)
    has_rtx = any(c.is_rtx for c in codecs)
    return RtpParameters(
        codecs=codecs,
        header_extensions=header_extensions,
        encodings=[_consumer_encoding(consumable_params.encodings, has_rtx)],
        rtcp=consumable_params.rtcp.model_copy(),
    )


def get_pipe_consumer_rtp_parameters(
    consumable_params: RtpParameters, router_rtp_capabilities: RtpCapabilities
) -> RtpParameters:
    """A pipe consumer's parameters: as get_consumer_rtp_parameters against the
    router's own capabilities, but with one encoding per layer of a simulcast
    producer (fresh SSRCs), so the router at the other end gets every layer."""
    params = get_consumer_rtp_parameters(consumable_params, router_rtp_capabilities)
    layers = consumable_params.encodings
    if len(layers) > 1:
        has_rtx = any(c.is_rtx for c in params.codecs)
        taken: set[int] = set()
        encodings = []
        for layer in layers:
            ssrc = _fresh_ssrc(taken)
            rtx = RtxParameters(ssrc=_fresh_ssrc(taken)) if has_rtx else None
            encodings.append(
                RtpEncodingParameters(
                    ssrc=ssrc,
                    rtx=rtx,
                    scalability_mode=layer.scalability_mode,
                    max_bitrate=layer.max_bitrate,
                )
            )
        params.encodings = encodings
    return params


def _fresh_ssrc(taken: set[int]) -> int:
    while (ssrc := _random_ssrc()) in taken:
        pass
    taken.add(ssrc)
    return ssrc


def _consumer_codecs(
    consumable_codecs: list[RtpCodecParameters], remote_codecs: list[RtpCodecCapability]
) -> list[RtpCodecParameters]:
    codecs = []
    for codec in consumable_codecs:
        cap = next((c for c in remote_codecs if _match_codecs(c, codec, strict=True)), None)
        if cap is None:
            continue
        # The remote's feedback, limited to what the router offers for this codec.
        feedback = [
            fb.model_copy() for fb in cap.rtcp_feedback if _has_feedback(codec.rtcp_feedback, fb)
        ]
        codecs.append(
            codec.model_copy(
                update={"parameters": dict(codec.parameters), "rtcp_feedback": feedback}
            )
        )
    # RTX is useless without its media codec.
    media_pts = {c.payload_type for c in codecs if not c.is_rtx}
    return [c for c in codecs if not c.is_rtx or c.parameters.get("apt") in media_pts]


def _has_feedback(feedbacks: list[RtcpFeedback], fb: RtcpFeedback) -> bool:
    return any(f.type == fb.type and f.parameter == fb.parameter for f in feedbacks)


def _consumer_header_extensions(
    consumable_params: RtpParameters, remote: RtpCapabilities
) -> list[RtpHeaderExtensionParameters]:
    kind = consumable_params.kind
    out: list[RtpHeaderExtensionParameters] = []
    for ext in consumable_params.header_extensions:
        cap = next(
            (c for c in remote.header_extensions if c.kind == kind and c.uri == ext.uri), None
        )
        # The remote's id (mediasoup-client reports the router's); skip id clashes.
        if cap is None or any(e.id == cap.preferred_id for e in out):
            continue
        out.append(
            ext.model_copy(update={"id": cap.preferred_id, "parameters": dict(ext.parameters)})
        )
    return out


def _reduce_rtcp_feedback(
    codecs: list[RtpCodecParameters], header_extensions: list[RtpHeaderExtensionParameters]
) -> None:
    """mediasoup's rule: transport-cc if its extension is negotiated, else REMB
    if abs-send-time is, else neither."""
    uris = {ext.uri for ext in header_extensions}
    if URI_TRANSPORT_WIDE_CC in uris:
        dropped = {"goog-remb"}
    elif URI_ABS_SEND_TIME in uris:
        dropped = {"transport-cc"}
    else:
        dropped = {"transport-cc", "goog-remb"}
    for codec in codecs:
        codec.rtcp_feedback = [fb for fb in codec.rtcp_feedback if fb.type not in dropped]


def _random_ssrc(avoid: int | None = None) -> int:
    while True:
        ssrc = random.randint(1, 0xFFFFFFFF)
        if ssrc != avoid:
            return ssrc


def _consumer_encoding(
    consumable_encodings: list[RtpEncodingParameters], has_rtx: bool
) -> RtpEncodingParameters:
    ssrc = _random_ssrc()
    rtx = RtxParameters(ssrc=_random_ssrc(avoid=ssrc)) if has_rtx else None
    scalability_mode = next(
        (e.scalability_mode for e in consumable_encodings if e.scalability_mode), None
    )
    # Simulcast: the consumer sees the N streams as N spatial layers.
    if len(consumable_encodings) > 1:
        temporal = _temporal_layers(scalability_mode)
        scalability_mode = f"L{len(consumable_encodings)}T{temporal}"
    max_bitrate = max((e.max_bitrate or 0 for e in consumable_encodings), default=0)
    return RtpEncodingParameters(
        ssrc=ssrc, rtx=rtx, scalability_mode=scalability_mode, max_bitrate=max_bitrate or None
    )


def _temporal_layers(scalability_mode: str | None) -> int:
    match = _SCALABILITY_RE.match(scalability_mode or "")
    return int(match.group(2)) if match else 1
