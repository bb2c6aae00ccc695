"""ORTC rules: mediasoup's ``ortc.ts`` in Python, on mediasoup's camelCase dicts.

Everything here works on plain ``dict[str, Any]`` in exactly the JSON shapes that
mediasoup and mediasoup-client exchange (RtpCapabilities, RtpParameters, ...).

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
- The mapping also maps header extension ids (``"headerExtensions"``).
- A consumer codec's rtcpFeedback is the remote's, limited to what the router
  offers for that codec, so a client never negotiates feedback we don't send.
- Validation is stricter: a value of the wrong type is an error, not coerced.
"""

from __future__ import annotations

import copy
import random
import re
from typing import Any

import h264_profile_level_id as h264

from ..errors import InvalidRequestError, UnsupportedError
from ..models import RtpCapabilities, RtpCodecCapability, RtpParameters
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

Json = dict[str, Any]


_SCALABILITY_RE = re.compile(r"^[LS]([1-9][0-9]?)T([1-9][0-9]?)(_KEY)?(_SHIFT)?$")

# Same order as mediasoup: 100..127 first, then 96..99.
_DYNAMIC_PAYLOAD_TYPES = [*range(100, 128), *range(96, 100)]

# The feedback the server implements, and nothing more: a router that offers
# transport-cc or goog-remb but never sends it keeps Chrome's video bitrate low.
_VIDEO_RTCP_FEEDBACK: list[Json] = [
    {"type": "nack", "parameter": ""},
    {"type": "nack", "parameter": "pli"},
    {"type": "ccm", "parameter": "fir"},
    {"type": "goog-remb", "parameter": ""},
]

# The codecs a Router may be configured with. PCMU/PCMA keep their static PTs.
_SUPPORTED_CODECS: list[Json] = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {
        "kind": "audio",
        "mimeType": "audio/PCMU",
        "clockRate": 8000,
        "channels": 1,
        "preferredPayloadType": 0,
    },
    {
        "kind": "audio",
        "mimeType": "audio/PCMA",
        "clockRate": 8000,
        "channels": 1,
        "preferredPayloadType": 8,
    },
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
    {"kind": "video", "mimeType": "video/VP9", "clockRate": 90000},
    {
        "kind": "video",
        "mimeType": "video/H264",
        "clockRate": 90000,
        "parameters": {"level-asymmetry-allowed": 1},
    },
]


def _ext(kind: str, uri: str, ext_id: int, direction: str) -> Json:
    return {
        "kind": kind,
        "uri": uri,
        "preferredId": ext_id,
        "preferredEncrypt": False,
        "direction": direction,
    }


# mid/rid/rrid are only received: the server demuxes with them but does not
# write them into forwarded packets, so consumers never negotiate them.
_SUPPORTED_HEADER_EXTENSIONS: list[Json] = [
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
]


# ---------------------------------------------------------------------------
# Router capabilities
# ---------------------------------------------------------------------------


def generate_router_rtp_capabilities(media_codecs: list[Json]) -> Json:
    """Build the Router's RtpCapabilities from RouterOptions.mediaCodecs.

    Raises InvalidRequestError for malformed codecs and UnsupportedError for
    codecs this server cannot forward.
    """
    if not isinstance(media_codecs, list):
        raise InvalidRequestError("mediaCodecs must be a list")
    free_pts = list(_DYNAMIC_PAYLOAD_TYPES)
    # Explicit preferredPayloadTypes are reserved first, so that a dynamic PT
    # handed out earlier (e.g. to an RTX codec) never collides with them.
    for media_codec in media_codecs:
        pt = media_codec.get("preferredPayloadType") if isinstance(media_codec, dict) else None
        if isinstance(pt, int) and pt in free_pts:
            free_pts.remove(pt)

    codecs: list[Json] = []
    for index, media_codec in enumerate(media_codecs):
        capability = RtpCodecCapability.from_wire(media_codec, where=f"mediaCodecs[{index}]")
        codec = _router_codec(capability.to_wire(), free_pts)
        if any(c["preferredPayloadType"] == codec["preferredPayloadType"] for c in codecs):
            raise InvalidRequestError(
                f"mediaCodecs[{index}] ({codec['mimeType']}): duplicated "
                f"preferredPayloadType {codec['preferredPayloadType']}"
            )
        codecs.append(codec)
        if codec["kind"] == "video":
            codecs.append(_rtx_codec(codec, _take_pt(free_pts)))
    return {"codecs": codecs, "headerExtensions": copy.deepcopy(_SUPPORTED_HEADER_EXTENSIONS)}


def _router_codec(media_codec: Json, free_pts: list[int]) -> Json:
    """The supported codec matching ``media_codec``, with its PT and parameters."""
    supported = next((s for s in _SUPPORTED_CODECS if _match_codecs(media_codec, s)), None)
    if supported is None:
        raise UnsupportedError(
            f"media codec not supported [mimeType:{media_codec['mimeType']}, "
            f"clockRate:{media_codec['clockRate']}, channels:{media_codec.get('channels')}]"
        )
    codec = copy.deepcopy(supported)
    if isinstance(media_codec.get("preferredPayloadType"), int):
        codec["preferredPayloadType"] = media_codec["preferredPayloadType"]
    elif "preferredPayloadType" not in codec:
        codec["preferredPayloadType"] = _take_pt(free_pts)
    # The configured parameters (profile-id, profile-level-id, ...) win.
    codec["parameters"] = {**codec.get("parameters", {}), **media_codec["parameters"]}
    codec["rtcpFeedback"] = copy.deepcopy(_VIDEO_RTCP_FEEDBACK) if codec["kind"] == "video" else []
    return codec


def _rtx_codec(media_codec: Json, pt: int) -> Json:
    return {
        "kind": media_codec["kind"],
        "mimeType": f"{media_codec['kind']}/rtx",
        "preferredPayloadType": pt,
        "clockRate": media_codec["clockRate"],
        "parameters": {"apt": media_codec["preferredPayloadType"]},
        "rtcpFeedback": [],
    }


def _take_pt(free_pts: list[int]) -> int:
    if not free_pts:
        raise UnsupportedError("cannot allocate more dynamic codec payload types")
    return free_pts.pop(0)


# ---------------------------------------------------------------------------
# Validation: the typed model (sfu.models) parses, fills in mediasoup's
# defaults and names the bad field; these return its wire dicts.
# ---------------------------------------------------------------------------


def validate_rtp_capabilities(caps: object) -> Json:
    """Check an RtpCapabilities object and return a normalized copy."""
    return RtpCapabilities.from_wire(caps).to_wire()


def validate_rtp_parameters(params: object) -> Json:
    """Check produce()'s RtpParameters and return a normalized copy."""
    return RtpParameters.from_wire(params).to_wire()


# ---------------------------------------------------------------------------
# Codec matching
# ---------------------------------------------------------------------------


def _kind_of(codec: Json) -> str:
    return str(codec["mimeType"]).split("/", 1)[0].lower()


def _is_rtx(codec: Json) -> bool:
    return str(codec["mimeType"]).lower().endswith("/rtx")


def _param(codec: Json, key: str, default: object) -> str:
    # sdp-transform turns numeric-looking values into numbers: compare as text.
    value = codec.get("parameters", {}).get(key)
    return str(default if value is None or value == "" else value)


def _h264_params(codec: Json) -> Json:
    params = dict(codec.get("parameters", {}))
    if "profile-level-id" in params:
        params["profile-level-id"] = str(params["profile-level-id"])
    return params


def _match_codecs(a: Json, b: Json, strict: bool = False, modify: bool = False) -> bool:
    """mediasoup's matchCodecs. With ``modify``, ``a``'s H264 profile-level-id
    becomes the negotiated one (what the Router will forward)."""
    mime = str(a["mimeType"]).lower()
    if mime != str(b["mimeType"]).lower() or a["clockRate"] != b["clockRate"]:
        return False
    if a.get("channels") != b.get("channels"):
        return False
    if not strict:
        return True
    if mime == "video/vp9":
        return _param(a, "profile-id", 0) == _param(b, "profile-id", 0)
    if mime == "video/h264":
        return _match_h264(a, b, modify)
    return True


def _match_h264(a: Json, b: Json, modify: bool) -> bool:
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
            a["parameters"]["profile-level-id"] = selected
        else:
            a["parameters"].pop("profile-level-id", None)
    return True


# ---------------------------------------------------------------------------
# Producer side
# ---------------------------------------------------------------------------


def get_producer_rtp_parameters_mapping(rtp_parameters: Json, router_caps: Json) -> Json:
    """Map a Producer's PTs, SSRCs and header extension ids onto the Router's.

    ``rtp_parameters`` must come from ``validate_rtp_parameters``. As in
    mediasoup, an H264 codec's profile-level-id in it is set to the
    negotiated one. Raises UnsupportedError if a codec has no router match.
    """
    router_codec_for: list[tuple[Json, Json]] = []
    for codec in rtp_parameters["codecs"]:
        if _is_rtx(codec):
            continue
        cap = next(
            (
                c
                for c in router_caps["codecs"]
                if not _is_rtx(c) and _match_codecs(codec, c, strict=True, modify=True)
            ),
            None,
        )
        if cap is None:
            raise UnsupportedError(
                f"unsupported codec [mimeType:{codec['mimeType']}, "
                f"payloadType:{codec['payloadType']}]: the router does not offer it"
            )
        router_codec_for.append((codec, cap))
    if not router_codec_for:
        raise UnsupportedError("rtpParameters.codecs has no media codec")
    for codec in rtp_parameters["codecs"]:
        if _is_rtx(codec):
            router_codec_for.append(
                (codec, _router_rtx_for(codec, rtp_parameters, router_codec_for, router_caps))
            )
    return {
        "codecs": [
            {"payloadType": c["payloadType"], "mappedPayloadType": cap["preferredPayloadType"]}
            for c, cap in router_codec_for
        ],
        "encodings": _map_encodings(rtp_parameters["encodings"]),
        "headerExtensions": _map_header_extensions(rtp_parameters, router_caps),
    }


def _router_rtx_for(
    rtx: Json, params: Json, mapped: list[tuple[Json, Json]], router_caps: Json
) -> Json:
    """The Router's RTX codec for the media codec that ``rtx``'s apt points to."""
    apt = rtx["parameters"].get("apt")
    cap_media = next((cap for c, cap in mapped if c["payloadType"] == apt), None)
    if cap_media is None:
        raise InvalidRequestError(
            f"rtpParameters: RTX codec with payloadType {rtx['payloadType']} has apt={apt!r}, "
            "which is not one of its media codecs"
        )
    cap_rtx = next(
        (
            c
            for c in router_caps["codecs"]
            if _is_rtx(c) and c["parameters"].get("apt") == cap_media["preferredPayloadType"]
        ),
        None,
    )
    if cap_rtx is None:
        raise UnsupportedError(
            f"the router has no RTX codec for {cap_media['mimeType']} "
            f"(payloadType {cap_media['preferredPayloadType']})"
        )
    return cap_rtx


def _map_encodings(encodings: list[Json]) -> list[Json]:
    # Consecutive SSRCs from one random base, as mediasoup does.
    base = random.randint(1, 0xFFFFFFFF - len(encodings))
    mapped = []
    for i, encoding in enumerate(encodings):
        entry: Json = {
            key: encoding[key] for key in ("ssrc", "rid", "scalabilityMode") if key in encoding
        }
        entry["mappedSsrc"] = base + i
        mapped.append(entry)
    return mapped


def _map_header_extensions(params: Json, router_caps: Json) -> list[Json]:
    """Client ext id -> router ext id, for extensions the router receives.
    Extensions the router does not know are left out: the server ignores them."""
    kind = _kind_of(params["codecs"][0])
    mapped = []
    for ext in params["headerExtensions"]:
        cap = next(
            (
                c
                for c in router_caps["headerExtensions"]
                if c["kind"] == kind
                and c["uri"] == ext["uri"]
                and c["direction"] in ("sendrecv", "recvonly")
            ),
            None,
        )
        if cap is not None:
            mapped.append({"id": ext["id"], "mappedId": cap["preferredId"], "uri": ext["uri"]})
    return mapped


def get_consumable_rtp_parameters(kind: str, params: Json, caps: Json, mapping: Json) -> Json:
    """The Producer's stream as the Router forwards it: router PTs, router ext ids,
    mapped SSRCs. Consumers' parameters are derived from this."""
    codecs: list[Json] = []
    for codec in params["codecs"]:
        if _is_rtx(codec):
            continue
        if _kind_of(codec) != kind:
            raise InvalidRequestError(f"codec {codec['mimeType']} is not of kind {kind!r}")
        cap = _router_codec_by_pt(caps, _mapped_pt(mapping, codec["payloadType"]))
        codecs.append(_consumable_codec(cap, parameters=codec["parameters"]))
        cap_rtx = next(
            (
                c
                for c in caps["codecs"]
                if _is_rtx(c) and c["parameters"].get("apt") == cap["preferredPayloadType"]
            ),
            None,
        )
        if cap_rtx is not None:
            codecs.append(_consumable_codec(cap_rtx, parameters=cap_rtx["parameters"]))

    # Only extensions the Router can write into forwarded packets.
    header_extensions = [
        {
            "uri": ext["uri"],
            "id": ext["preferredId"],
            "encrypt": ext["preferredEncrypt"],
            "parameters": {},
        }
        for ext in caps["headerExtensions"]
        if ext["kind"] == kind and ext["direction"] in ("sendrecv", "sendonly")
    ]
    rtcp: Json = {"reducedSize": True}
    if params.get("rtcp", {}).get("cname"):
        rtcp = {"cname": params["rtcp"]["cname"], "reducedSize": True}
    return {
        "codecs": codecs,
        "headerExtensions": header_extensions,
        "encodings": _consumable_encodings(params["encodings"], mapping["encodings"]),
        "rtcp": rtcp,
    }


def _mapped_pt(mapping: Json, payload_type: int) -> int:
    entry = next((e for e in mapping["codecs"] if e["payloadType"] == payload_type), None)
    if entry is None:
        raise InvalidRequestError(f"no mapping for payloadType {payload_type}")
    return int(entry["mappedPayloadType"])


def _router_codec_by_pt(caps: Json, pt: int) -> Json:
    cap = next((c for c in caps["codecs"] if c["preferredPayloadType"] == pt), None)
    if cap is None:
        raise InvalidRequestError(f"the router has no codec with payloadType {pt}")
    return cap


def _consumable_codec(cap: Json, parameters: Json) -> Json:
    codec: Json = {
        "mimeType": cap["mimeType"],
        "payloadType": cap["preferredPayloadType"],
        "clockRate": cap["clockRate"],
    }
    if "channels" in cap:
        codec["channels"] = cap["channels"]
    codec["parameters"] = copy.deepcopy(parameters)
    codec["rtcpFeedback"] = copy.deepcopy(cap["rtcpFeedback"])
    return codec


def _consumable_encodings(encodings: list[Json], mapped: list[Json]) -> list[Json]:
    if len(mapped) != len(encodings):
        raise InvalidRequestError("the mapping does not match rtpParameters.encodings")
    out = []
    for encoding, entry in zip(encodings, mapped, strict=True):
        # rid/rtx/codecPayloadType describe the producer's wire, not the router's.
        consumable = {
            k: copy.deepcopy(v)
            for k, v in encoding.items()
            if k not in ("rid", "rtx", "codecPayloadType")
        }
        consumable["ssrc"] = entry["mappedSsrc"]
        out.append(consumable)
    return out


# ---------------------------------------------------------------------------
# Consumer side
# ---------------------------------------------------------------------------


def can_consume(consumable_params: Json, caps: Json) -> bool:
    """Whether a client with RtpCapabilities ``caps`` can receive the stream.

    ``caps`` come from ``validate_rtp_capabilities``: a client's are validated
    once, at the edge (the room, when the peer joins), not on every consume.
    """
    # Same codec selection as get_consumer_rtp_parameters, so the two agree even
    # when a producer has several media codecs (mediasoup only checks the first).
    codecs = _consumer_codecs(consumable_params["codecs"], caps["codecs"])
    return bool(codecs) and not _is_rtx(codecs[0])


def get_consumer_rtp_parameters(consumable_params: Json, remote_rtp_capabilities: Json) -> Json:
    """RtpParameters for one Consumer: the remote's codecs, header extensions in
    common, reduced RTCP feedback, and a single encoding with fresh SSRCs.

    ``mid`` is left unset: the transport assigns it. ``remote_rtp_capabilities``
    come from ``validate_rtp_capabilities`` (see can_consume). Raises
    UnsupportedError if no media codec matches.
    """
    remote = remote_rtp_capabilities
    codecs = _consumer_codecs(consumable_params["codecs"], remote["codecs"])
    if not codecs or _is_rtx(codecs[0]):
        raise UnsupportedError(
            "no compatible media codecs: the consumer's rtpCapabilities "
            "do not include the producer's codec"
        )
    header_extensions = _consumer_header_extensions(consumable_params, remote)
    _reduce_rtcp_feedback(codecs, header_extensions)
    has_rtx = any(_is_rtx(c) for c in codecs)
    return {
        "codecs": codecs,
        "headerExtensions": header_extensions,
        "encodings": [_consumer_encoding(consumable_params["encodings"], has_rtx)],
        "rtcp": copy.deepcopy(consumable_params["rtcp"]),
    }


def _consumer_codecs(consumable_codecs: list[Json], remote_codecs: list[Json]) -> list[Json]:
    codecs = []
    for codec in consumable_codecs:
        cap = next((c for c in remote_codecs if _match_codecs(c, codec, strict=True)), None)
        if cap is None:
            continue
        out = copy.deepcopy(codec)
        # The remote's feedback, limited to what the router offers for this codec.
        out["rtcpFeedback"] = [
            copy.deepcopy(fb)
            for fb in cap["rtcpFeedback"]
            if _has_feedback(codec["rtcpFeedback"], fb)
        ]
        codecs.append(out)
    # RTX is useless without its media codec.
    media_pts = {c["payloadType"] for c in codecs if not _is_rtx(c)}
    return [c for c in codecs if not _is_rtx(c) or c["parameters"].get("apt") in media_pts]


def _has_feedback(feedbacks: list[Json], fb: Json) -> bool:
    return any(
        f["type"] == fb["type"] and f.get("parameter", "") == fb.get("parameter", "")
        for f in feedbacks
    )


def _consumer_header_extensions(consumable_params: Json, remote: Json) -> list[Json]:
    kind = _kind_of(consumable_params["codecs"][0])
    out: list[Json] = []
    for ext in consumable_params["headerExtensions"]:
        cap = next(
            (c for c in remote["headerExtensions"] if c["kind"] == kind and c["uri"] == ext["uri"]),
            None,
        )
        # The remote's id (mediasoup-client reports the router's); skip id clashes.
        if cap is None or any(e["id"] == cap["preferredId"] for e in out):
            continue
        out.append({**copy.deepcopy(ext), "id": cap["preferredId"]})
    return out


def _reduce_rtcp_feedback(codecs: list[Json], header_extensions: list[Json]) -> None:
    """mediasoup's rule: transport-cc if its extension is negotiated, else REMB
    if abs-send-time is, else neither."""
    uris = {ext["uri"] for ext in header_extensions}
    if URI_TRANSPORT_WIDE_CC in uris:
        dropped = {"goog-remb"}
    elif URI_ABS_SEND_TIME in uris:
        dropped = {"transport-cc"}
    else:
        dropped = {"transport-cc", "goog-remb"}
    for codec in codecs:
        codec["rtcpFeedback"] = [fb for fb in codec["rtcpFeedback"] if fb["type"] not in dropped]


def _random_ssrc(avoid: int | None = None) -> int:
    while True:
        ssrc = random.randint(1, 0xFFFFFFFF)
        if ssrc != avoid:
            return ssrc


def _consumer_encoding(consumable_encodings: list[Json], has_rtx: bool) -> Json:
    encoding: Json = {"ssrc": _random_ssrc()}
    if has_rtx:
        encoding["rtx"] = {"ssrc": _random_ssrc(avoid=encoding["ssrc"])}
    scalability_mode = next(
        (e["scalabilityMode"] for e in consumable_encodings if e.get("scalabilityMode")), None
    )
    # Simulcast: the consumer sees the N streams as N spatial layers.
    if len(consumable_encodings) > 1:
        temporal = _temporal_layers(scalability_mode)
        scalability_mode = f"L{len(consumable_encodings)}T{temporal}"
    if scalability_mode:
        encoding["scalabilityMode"] = scalability_mode
    max_bitrate = max((e.get("maxBitrate") or 0 for e in consumable_encodings), default=0)
    if max_bitrate:
        encoding["maxBitrate"] = max_bitrate
    return encoding


def _temporal_layers(scalability_mode: str | None) -> int:
    match = _SCALABILITY_RE.match(scalability_mode or "")
    return int(match.group(2)) if match else 1
