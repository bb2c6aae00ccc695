"""ORTC rules against real clients' capability sets: aiortc (through pymediasoup)
and Chrome (through mediasoup-client)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from sfu.control.ortc import (
    can_consume,
    generate_router_rtp_capabilities,
    get_consumable_rtp_parameters,
    get_consumer_rtp_parameters,
    get_producer_rtp_parameters_mapping,
    validate_rtp_capabilities,
    validate_rtp_parameters,
)
from sfu.errors import InvalidRequestError, UnsupportedError
from sfu.models import RtpCapabilities, RtpMapping, RtpParameters

Json = dict[str, Any]

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ORIENTATION = "urn:3gpp:video-orientation"
TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"

# mediasoup-demo's default RouterOptions.mediaCodecs.
MEDIA_CODECS: list[Json] = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
    {"kind": "video", "mimeType": "video/VP9", "clockRate": 90000, "parameters": {"profile-id": 2}},
    {
        "kind": "video",
        "mimeType": "video/H264",
        "clockRate": 90000,
        "parameters": {
            "packetization-mode": 1,
            "profile-level-id": "4d0032",
            "level-asymmetry-allowed": 1,
        },
    },
    {
        "kind": "video",
        "mimeType": "video/H264",
        "clockRate": 90000,
        "parameters": {
            "packetization-mode": 1,
            "profile-level-id": "42e01f",
            "level-asymmetry-allowed": 1,
        },
    },
]

# Router PTs that generate_router_rtp_capabilities(MEDIA_CODECS) hands out.
OPUS, VP8, VP8_RTX, VP9, VP9_RTX, H264_MAIN, H264_MAIN_RTX, H264_CB, H264_CB_RTX = range(100, 109)


@pytest.fixture(scope="module")
def router_caps() -> RtpCapabilities:
    return generate_router_rtp_capabilities(MEDIA_CODECS)


# ---------------------------------------------------------------------------
# aiortc, through pymediasoup: computed for real, not hand-written.
# ---------------------------------------------------------------------------


async def _aiortc_client(router_caps: RtpCapabilities) -> Json:
    """pymediasoup's device.rtpCapabilities, and the rtpParameters its send
    transport hands to the "produce" event for an audio and a video track."""
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
    from pymediasoup import Device
    from pymediasoup.handlers.aiortc_handler import AiortcHandler
    from pymediasoup.rtp_parameters import RtpCapabilities as DeviceRtpCapabilities

    device = Device(handlerFactory=AiortcHandler.createFactory(tracks=[]))
    await device.load(DeviceRtpCapabilities.model_validate(router_caps.to_wire()))
    # Server-side transport parameters: never contacted, since we stop at "produce".
    transport = device.createSendTransport(
        id="t1",
        iceParameters={"usernameFragment": "ufrag123", "password": "p" * 24, "iceLite": True},
        iceCandidates=[
            {
                "foundation": "udpcandidate",
                "priority": 1076302079,
                "ip": "127.0.0.1",
                "protocol": "udp",
                "port": 9,
                "type": "host",
            }
        ],
        dtlsParameters={
            "role": "auto",
            "fingerprints": [{"algorithm": "sha-256", "value": ":".join(["AB"] * 32)}],
        },
        sctpParameters=None,
        iceServers=[],
    )
    produced: dict[str, Json] = {}

    @transport.on("connect")  # type: ignore[untyped-decorator]  # pymediasoup: untyped
    async def on_connect(dtls_parameters: Any) -> None:
        pass

    @transport.on("produce")  # type: ignore[untyped-decorator]  # pymediasoup: untyped
    async def on_produce(kind: str, rtp_parameters: Any, app_data: Any) -> str:
        produced[kind] = rtp_parameters.model_dump(exclude_none=True)
        return f"producer-{kind}"

    tracks = [AudioStreamTrack(), VideoStreamTrack()]
    try:
        for track in tracks:
            await transport.produce(track=track)
    finally:
        await transport.close()
        for track in tracks:
            track.stop()
    assert device.rtpCapabilities is not None
    return {"rtpCapabilities": device.rtpCapabilities.model_dump(exclude_none=True), **produced}


@pytest.fixture(scope="module")
def aiortc(router_caps: RtpCapabilities) -> Json:
    return asyncio.run(_aiortc_client(router_caps))


# ---------------------------------------------------------------------------
# Chrome, through mediasoup-client 3.x (handler Chrome111). Hand-written:
# Chrome's native capabilities (from its SDP offer: opus 111, VP8 96/rtx 97,
# VP9 98/100, H264 102..127, AV1; ext ids audio-level=1, abs-send-time=2,
# transport-wide-cc=3, mid=4, toffset=14, video-orientation=13, rid=10,
# rrid=11) reduced against MEDIA_CODECS by mediasoup-client's ortc rules.
# ---------------------------------------------------------------------------

CHROME_VIDEO_FB = [
    {"type": "goog-remb", "parameter": ""},
    {"type": "ccm", "parameter": "fir"},
    {"type": "nack", "parameter": ""},
    {"type": "nack", "parameter": "pli"},
]


def _chrome_video(mime: str, pt: int, parameters: Json) -> Json:
    return {
        "mimeType": mime,
        "kind": "video",
        "preferredPayloadType": pt,
        "clockRate": 90000,
        "parameters": parameters,
        "rtcpFeedback": copy.deepcopy(CHROME_VIDEO_FB),
    }


def _chrome_rtx(pt: int, apt: int) -> Json:
    return {
        "mimeType": "video/rtx",
        "kind": "video",
        "preferredPayloadType": pt,
        "clockRate": 90000,
        "parameters": {"apt": apt},
        "rtcpFeedback": [],
    }


# device.rtpCapabilities (what the browser sends in "join"): the router's PTs and
# ext ids, Chrome's codec parameters, and the feedback both sides support.
CHROME_RTP_CAPABILITIES: Json = {
    "codecs": [
        {
            "mimeType": "audio/opus",
            "kind": "audio",
            "preferredPayloadType": OPUS,
            "clockRate": 48000,
            "channels": 2,
            "parameters": {"minptime": 10, "useinbandfec": 1},
            "rtcpFeedback": [],
        },
        _chrome_video("video/VP8", VP8, {}),
        _chrome_rtx(VP8_RTX, VP8),
        _chrome_video("video/VP9", VP9, {"profile-id": 2}),
        _chrome_rtx(VP9_RTX, VP9),
        # Chrome's Main profile level 3.1; mediasoup-client settles on it.
        _chrome_video(
            "video/H264",
            H264_MAIN,
            {"level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "4d001f"},
        ),
        _chrome_rtx(H264_MAIN_RTX, H264_MAIN),
        _chrome_video(
            "video/H264",
            H264_CB,
            {"level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "42e01f"},
        ),
        _chrome_rtx(H264_CB_RTX, H264_CB),
    ],
    # rid/rrid are recvonly on the router, so they are not receivable here.
    "headerExtensions": [
        {
            "kind": "audio",
            "uri": MID,
            "preferredId": 1,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
        {
            "kind": "video",
            "uri": MID,
            "preferredId": 1,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
        {
            "kind": "audio",
            "uri": ABS_SEND_TIME,
            "preferredId": 4,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
        {
            "kind": "video",
            "uri": ABS_SEND_TIME,
            "preferredId": 4,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
        {
            "kind": "audio",
            "uri": AUDIO_LEVEL,
            "preferredId": 10,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
        {
            "kind": "video",
            "uri": ORIENTATION,
            "preferredId": 11,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
        {
            "kind": "video",
            "uri": TOFFSET,
            "preferredId": 12,
            "preferredEncrypt": False,
            "direction": "sendrecv",
        },
    ],
}


def _ext(uri: str, ext_id: int) -> Json:
    return {"uri": uri, "id": ext_id, "encrypt": False, "parameters": {}}


# transport.produce() data from Chrome: Chrome's own PTs and ext ids.
CHROME_AUDIO_PRODUCE: Json = {
    "mid": "0",
    "codecs": [
        {
            "mimeType": "audio/opus",
            "payloadType": 111,
            "clockRate": 48000,
            "channels": 2,
            "parameters": {"minptime": 10, "useinbandfec": 1},
            "rtcpFeedback": [],
        }
    ],
    "headerExtensions": [_ext(MID, 4), _ext(ABS_SEND_TIME, 2), _ext(AUDIO_LEVEL, 1)],
    "encodings": [{"ssrc": 2875413712, "dtx": False}],
    "rtcp": {"cname": "kQ2mM3ec8fRkx+Ad", "reducedSize": True},
}

CHROME_VIDEO_PRODUCE: Json = {
    "mid": "1",
    "codecs": [
        {
            "mimeType": "video/VP8",
            "payloadType": 96,
            "clockRate": 90000,
            "parameters": {},
            "rtcpFeedback": copy.deepcopy(CHROME_VIDEO_FB),
        },
        {
            "mimeType": "video/rtx",
            "payloadType": 97,
            "clockRate": 90000,
            "parameters": {"apt": 96},
            "rtcpFeedback": [],
        },
    ],
    "headerExtensions": [
        _ext(MID, 4),
        _ext(RID, 10),
        _ext(RRID, 11),
        _ext(ABS_SEND_TIME, 2),
        _ext(ORIENTATION, 13),
        _ext(TOFFSET, 14),
    ],
    "encodings": [{"ssrc": 1737421312, "rtx": {"ssrc": 3913184271}, "dtx": False}],
    "rtcp": {"cname": "kQ2mM3ec8fRkx+Ad", "reducedSize": True},
}

# mediasoup-demo's webcam simulcast: rids, no SSRCs, the same L1T3 everywhere.
CHROME_SIMULCAST_ENCODINGS: list[Json] = [
    {
        "rid": f"r{i}",
        "scaleResolutionDownBy": scale,
        "maxBitrate": bitrate,
        "scalabilityMode": "L1T3",
        "dtx": False,
    }
    for i, (scale, bitrate) in enumerate([(4, 500000), (2, 1000000), (1, 5000000)])
]

# A client that can only receive H264 Constrained Baseline (no VP8, no Main).
H264_ONLY_CAPABILITIES: Json = {
    "codecs": [
        {
            "mimeType": "audio/opus",
            "kind": "audio",
            "preferredPayloadType": OPUS,
            "clockRate": 48000,
            "channels": 2,
            "parameters": {},
            "rtcpFeedback": [],
        },
        _chrome_video(
            "video/H264",
            H264_CB,
            {"level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "42e01f"},
        ),
        _chrome_rtx(H264_CB_RTX, H264_CB),
    ],
    "headerExtensions": copy.deepcopy(CHROME_RTP_CAPABILITIES["headerExtensions"]),
}


def _produce(
    router_caps: RtpCapabilities, kind: str, rtp_parameters: Json
) -> tuple[RtpParameters, RtpMapping, RtpParameters]:
    """What the server does on "produce": validate, map, derive consumable."""
    params = validate_rtp_parameters(rtp_parameters)
    mapping = get_producer_rtp_parameters_mapping(params, router_caps)
    consumable = get_consumable_rtp_parameters(kind, params, router_caps, mapping)
    return params, mapping, consumable


def _pts(mapping: RtpMapping) -> dict[int, int]:
    return {c.payload_type: c.mapped_payload_type for c in mapping.codecs}


def _ext_ids(mapping: RtpMapping) -> dict[str, tuple[int, int]]:
    return {e.uri: (e.id, e.mapped_id) for e in mapping.header_extensions}


def _consumer_params(consumable: RtpParameters, caps: RtpCapabilities) -> Json:
    """The consumer's parameters as the client gets them in newConsumer."""
    return get_consumer_rtp_parameters(consumable, caps).to_wire()


def _fb(codec: Json) -> list[tuple[str, str]]:
    return [(fb["type"], fb["parameter"]) for fb in codec["rtcpFeedback"]]


# ---------------------------------------------------------------------------
# Router capabilities
# ---------------------------------------------------------------------------


def test_router_capabilities_codecs(router_caps: RtpCapabilities) -> None:
    codecs = router_caps.to_wire()["codecs"]
    assert [(c["mimeType"], c["preferredPayloadType"]) for c in codecs] == [
        ("audio/opus", OPUS),
        ("video/VP8", VP8),
        ("video/rtx", VP8_RTX),
        ("video/VP9", VP9),
        ("video/rtx", VP9_RTX),
        ("video/H264", H264_MAIN),
        ("video/rtx", H264_MAIN_RTX),
        ("video/H264", H264_CB),
        ("video/rtx", H264_CB_RTX),
    ]
    assert codecs[0] == {
        "kind": "audio",
        "mimeType": "audio/opus",
        "clockRate": 48000,
        "channels": 2,
        "preferredPayloadType": OPUS,
        "parameters": {},
        "rtcpFeedback": [],
    }
    assert codecs[2] == {
        "kind": "video",
        "mimeType": "video/rtx",
        "preferredPayloadType": VP8_RTX,
        "clockRate": 90000,
        "parameters": {"apt": VP8},
        "rtcpFeedback": [],
    }
    assert codecs[3]["parameters"] == {"profile-id": 2}
    assert codecs[5]["parameters"] == {
        "packetization-mode": 1,
        "profile-level-id": "4d0032",
        "level-asymmetry-allowed": 1,
    }
    # Only the feedback the server implements: no transport-cc.
    for codec in codecs:
        if codec["kind"] == "video" and codec["mimeType"] != "video/rtx":
            assert _fb(codec) == [("nack", ""), ("nack", "pli"), ("ccm", "fir"), ("goog-remb", "")]
            assert "channels" not in codec


def test_router_capabilities_header_extensions(router_caps: RtpCapabilities) -> None:
    exts = [
        (e["kind"], e["uri"], e["preferredId"], e["direction"])
        for e in router_caps.to_wire()["headerExtensions"]
    ]
    assert exts == [
        ("audio", MID, 1, "sendrecv"),
        ("video", MID, 1, "sendrecv"),
        ("video", RID, 2, "recvonly"),
        ("video", RRID, 3, "recvonly"),
        ("audio", ABS_SEND_TIME, 4, "sendrecv"),
        ("video", ABS_SEND_TIME, 4, "sendrecv"),
        ("audio", AUDIO_LEVEL, 10, "sendrecv"),
        ("video", ORIENTATION, 11, "sendrecv"),
        ("video", TOFFSET, 12, "sendrecv"),
    ]
    assert all(e.preferred_encrypt is False for e in router_caps.header_extensions)
    # The router's own output is valid capabilities.
    assert validate_rtp_capabilities(router_caps.to_wire()) == router_caps


def test_router_capabilities_payload_types() -> None:
    caps = generate_router_rtp_capabilities(
        [
            {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
            {
                "kind": "audio",
                "mimeType": "audio/opus",
                "clockRate": 48000,
                "channels": 2,
                "preferredPayloadType": 101,
            },
            {"kind": "audio", "mimeType": "audio/PCMU", "clockRate": 8000},
            {"kind": "audio", "mimeType": "audio/pcma", "clockRate": 8000},
        ]
    )
    # 101 is reserved for opus, so VP8's RTX skips it; PCMU/PCMA keep static PTs.
    assert [(c["mimeType"], c["preferredPayloadType"]) for c in caps.to_wire()["codecs"]] == [
        ("video/VP8", 100),
        ("video/rtx", 102),
        ("audio/opus", 101),
        ("audio/PCMU", 0),
        ("audio/PCMA", 8),
    ]


@pytest.mark.parametrize(
    ("codec", "field"),
    [
        ({"kind": "audio", "mimeType": "audio/G722", "clockRate": 8000}, "audio/G722"),
        ({"kind": "video", "mimeType": "video/AV1", "clockRate": 90000}, "video/AV1"),
        ({"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000}, "audio/opus"),  # mono
    ],
)
def test_router_capabilities_unsupported_codec(codec: Json, field: str) -> None:
    with pytest.raises(UnsupportedError, match=field):
        generate_router_rtp_capabilities([codec])


@pytest.mark.parametrize(
    ("media_codecs", "field"),
    [
        ({"kind": "audio"}, "mediaCodecs"),
        (["audio/opus"], r"mediaCodecs\[0\]"),
        ([{"kind": "audio", "mimeType": "opus", "clockRate": 48000}], "mimeType"),
        (
            [{"kind": "audio", "mimeType": "audio/opus", "clockRate": "48000", "channels": 2}],
            "clockRate",
        ),
        ([{"kind": "video", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}], "kind"),
        (
            [
                {
                    "kind": "video",
                    "mimeType": "video/VP8",
                    "clockRate": 90000,
                    "preferredPayloadType": 96,
                },
                {
                    "kind": "video",
                    "mimeType": "video/VP9",
                    "clockRate": 90000,
                    "preferredPayloadType": 96,
                },
            ],
            "preferredPayloadType",
        ),
    ],
)
def test_router_capabilities_bad_input(media_codecs: Any, field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field):
        generate_router_rtp_capabilities(media_codecs)


# ---------------------------------------------------------------------------
# Client capabilities
# ---------------------------------------------------------------------------


def test_aiortc_device_capabilities(aiortc: Json) -> None:
    caps = validate_rtp_capabilities(aiortc["rtpCapabilities"]).to_wire()
    # pymediasoup reports the router's PTs and ext ids for receiving.
    assert [(c["mimeType"], c["preferredPayloadType"]) for c in caps["codecs"]] == [
        ("audio/opus", OPUS),
        ("video/VP8", VP8),
        ("video/rtx", VP8_RTX),
        ("video/H264", H264_CB),
        ("video/rtx", H264_CB_RTX),
    ]
    assert {(e["kind"], e["uri"], e["preferredId"]) for e in caps["headerExtensions"]} == {
        ("audio", MID, 1),
        ("video", MID, 1),
        ("video", ABS_SEND_TIME, 4),
        ("audio", AUDIO_LEVEL, 10),
    }


def test_validation_normalizes_without_mutating() -> None:
    caps = copy.deepcopy(CHROME_RTP_CAPABILITIES)
    caps["codecs"][0].pop("channels")
    caps["headerExtensions"][0].pop("direction")
    caps["codecs"][1]["rtcpFeedback"] = [{"type": "nack"}]
    normalized = validate_rtp_capabilities(caps).to_wire()
    assert normalized["codecs"][0]["channels"] == 1
    assert normalized["headerExtensions"][0]["direction"] == "sendrecv"
    assert normalized["codecs"][1]["rtcpFeedback"] == [{"type": "nack", "parameter": ""}]
    assert "channels" not in caps["codecs"][0]
    assert "direction" not in caps["headerExtensions"][0]

    params = validate_rtp_parameters(
        {"codecs": CHROME_AUDIO_PRODUCE["codecs"], "encodings": [{"ssrc": 1, "rid": None}]}
    ).to_wire()
    assert params["headerExtensions"] == []
    # dtx unset means false (mediasoup writes the false in); no consumer encoding carries it.
    assert params["encodings"] == [{"ssrc": 1}]
    assert params["rtcp"] == {"reducedSize": True}
    assert "mid" not in params


# ---------------------------------------------------------------------------
# Producer mapping
# ---------------------------------------------------------------------------


def test_aiortc_produce_mapping(router_caps: RtpCapabilities, aiortc: Json) -> None:
    audio, video = aiortc["audio"], aiortc["video"]
    # The real pymediasoup produce parameters: aiortc's own PTs and ext ids.
    assert [c["payloadType"] for c in audio["codecs"]] == [96]
    assert [c["payloadType"] for c in video["codecs"]] == [97, 98]

    _, mapping, _ = _produce(router_caps, "audio", audio)
    assert _pts(mapping) == {96: OPUS}
    assert _ext_ids(mapping) == {MID: (1, 1), AUDIO_LEVEL: (2, 10)}
    [encoding] = mapping.to_wire()["encodings"]
    assert encoding["ssrc"] == audio["encodings"][0]["ssrc"]
    assert 0 < encoding["mappedSsrc"] <= 0xFFFFFFFF

    _, mapping, _ = _produce(router_caps, "video", video)
    assert _pts(mapping) == {97: VP8, 98: VP8_RTX}
    assert _ext_ids(mapping) == {MID: (1, 1), ABS_SEND_TIME: (3, 4)}
    assert mapping.to_wire()["encodings"][0]["ssrc"] == video["encodings"][0]["ssrc"]


def test_chrome_produce_mapping(router_caps: RtpCapabilities) -> None:
    _, mapping, _ = _produce(router_caps, "audio", CHROME_AUDIO_PRODUCE)
    assert _pts(mapping) == {111: OPUS}
    assert _ext_ids(mapping) == {MID: (4, 1), ABS_SEND_TIME: (2, 4), AUDIO_LEVEL: (1, 10)}
    assert mapping.to_wire()["encodings"][0]["ssrc"] == 2875413712

    _, mapping, _ = _produce(router_caps, "video", CHROME_VIDEO_PRODUCE)
    assert _pts(mapping) == {96: VP8, 97: VP8_RTX}
    assert _ext_ids(mapping) == {
        MID: (4, 1),
        RID: (10, 2),
        RRID: (11, 3),
        ABS_SEND_TIME: (2, 4),
        ORIENTATION: (13, 11),
        TOFFSET: (14, 12),
    }


def test_mapping_ignores_extensions_the_router_does_not_know(router_caps: RtpCapabilities) -> None:
    params = copy.deepcopy(CHROME_VIDEO_PRODUCE)
    params["headerExtensions"].append(_ext(TWCC, 3))
    _, mapping, _ = _produce(router_caps, "video", params)
    assert TWCC not in _ext_ids(mapping)


def test_chrome_consumable_parameters(router_caps: RtpCapabilities) -> None:
    _, mapping, consumable = _produce(router_caps, "video", CHROME_VIDEO_PRODUCE)
    assert [(c["mimeType"], c["payloadType"]) for c in consumable.to_wire()["codecs"]] == [
        ("video/VP8", VP8),
        ("video/rtx", VP8_RTX),
    ]
    assert consumable.to_wire()["codecs"][1]["parameters"] == {"apt": VP8}
    # The router's feedback and extensions it can send; mid/rid/rrid are receive-only.
    assert _fb(consumable.to_wire()["codecs"][0]) == [
        ("nack", ""),
        ("nack", "pli"),
        ("ccm", "fir"),
        ("goog-remb", ""),
    ]
    assert [(e["uri"], e["id"]) for e in consumable.to_wire()["headerExtensions"]] == [
        (MID, 1),
        (ABS_SEND_TIME, 4),
        (ORIENTATION, 11),
        (TOFFSET, 12),
    ]
    assert consumable.to_wire()["encodings"] == [
        {"ssrc": mapping.to_wire()["encodings"][0]["mappedSsrc"], "dtx": False}
    ]
    assert consumable.to_wire()["rtcp"] == {"cname": "kQ2mM3ec8fRkx+Ad", "reducedSize": True}

    _, _, consumable = _produce(router_caps, "audio", CHROME_AUDIO_PRODUCE)
    assert consumable.to_wire()["codecs"] == [
        {
            "mimeType": "audio/opus",
            "payloadType": OPUS,
            "clockRate": 48000,
            "channels": 2,
            "parameters": {"minptime": 10, "useinbandfec": 1},
            "rtcpFeedback": [],
        }
    ]
    assert [e["uri"] for e in consumable.to_wire()["headerExtensions"]] == [
        MID,
        ABS_SEND_TIME,
        AUDIO_LEVEL,
    ]


def test_simulcast_mapping_and_consumer(router_caps: RtpCapabilities) -> None:
    params = copy.deepcopy(CHROME_VIDEO_PRODUCE)
    params["encodings"] = copy.deepcopy(CHROME_SIMULCAST_ENCODINGS)
    _, mapping, consumable = _produce(router_caps, "video", params)
    assert [e["rid"] for e in mapping.to_wire()["encodings"]] == ["r0", "r1", "r2"]
    base = mapping.to_wire()["encodings"][0]["mappedSsrc"]
    assert [e["mappedSsrc"] for e in mapping.to_wire()["encodings"]] == [base, base + 1, base + 2]
    assert all("rid" not in e for e in consumable.to_wire()["encodings"])

    consumer = _consumer_params(consumable, validate_rtp_capabilities(CHROME_RTP_CAPABILITIES))
    [encoding] = consumer["encodings"]
    assert encoding["scalabilityMode"] == "L3T3"  # three streams = three spatial layers
    assert encoding["maxBitrate"] == 5000000


# ---------------------------------------------------------------------------
# Consumer parameters: every producer/consumer pairing of aiortc and Chrome.
# ---------------------------------------------------------------------------


def _client(name: str, aiortc: Json) -> tuple[RtpCapabilities, Json, Json]:
    """A device's capabilities (validated, as the room does at join) and what it produces."""
    if name == "aiortc":
        return (
            validate_rtp_capabilities(aiortc["rtpCapabilities"]),
            aiortc["audio"],
            aiortc["video"],
        )
    return (
        validate_rtp_capabilities(CHROME_RTP_CAPABILITIES),
        CHROME_AUDIO_PRODUCE,
        CHROME_VIDEO_PRODUCE,
    )


@pytest.mark.parametrize("producer", ["aiortc", "chrome"])
@pytest.mark.parametrize("consumer", ["aiortc", "chrome"])
def test_consumer_parameters_video(
    router_caps: RtpCapabilities, aiortc: Json, producer: str, consumer: str
) -> None:
    _, _, produce_video = _client(producer, aiortc)
    remote_caps, _, _ = _client(consumer, aiortc)
    _, _, consumable = _produce(router_caps, "video", produce_video)
    assert can_consume(consumable, remote_caps)

    params = _consumer_params(consumable, remote_caps)
    assert "mid" not in params  # the transport assigns it
    assert [(c["mimeType"], c["payloadType"]) for c in params["codecs"]] == [
        ("video/VP8", VP8),
        ("video/rtx", VP8_RTX),
    ]
    assert params["codecs"][1]["parameters"] == {"apt": VP8}
    feedback = _fb(params["codecs"][0])
    assert ("goog-remb", "") in feedback
    assert ("nack", "pli") in feedback
    assert not any(t == "transport-cc" for t, _ in feedback)
    # The consumer's own feedback set: aiortc has no FIR.
    assert (("ccm", "fir") in feedback) is (consumer == "chrome")
    uris = [e["uri"] for e in params["headerExtensions"]]
    # The consumer's own MID goes on its RTX packets; rid is receive-only.
    assert MID in uris
    assert RID not in uris
    assert ABS_SEND_TIME in uris
    assert all(
        e["id"] == {MID: 1, ABS_SEND_TIME: 4, ORIENTATION: 11, TOFFSET: 12}[e["uri"]]
        for e in params["headerExtensions"]
    )
    [encoding] = params["encodings"]
    assert set(encoding) == {"ssrc", "rtx"}
    assert encoding["ssrc"] != encoding["rtx"]["ssrc"]
    assert encoding["ssrc"] != consumable.to_wire()["encodings"][0]["ssrc"]
    assert params["rtcp"] == consumable.to_wire()["rtcp"]


@pytest.mark.parametrize("producer", ["aiortc", "chrome"])
@pytest.mark.parametrize("consumer", ["aiortc", "chrome"])
def test_consumer_parameters_audio(
    router_caps: RtpCapabilities, aiortc: Json, producer: str, consumer: str
) -> None:
    _, produce_audio, _ = _client(producer, aiortc)
    remote_caps, _, _ = _client(consumer, aiortc)
    _, _, consumable = _produce(router_caps, "audio", produce_audio)
    params = _consumer_params(consumable, remote_caps)
    assert [(c["mimeType"], c["payloadType"]) for c in params["codecs"]] == [("audio/opus", OPUS)]
    assert params["codecs"][0]["rtcpFeedback"] == []
    exts = {e["uri"]: e["id"] for e in params["headerExtensions"]}
    assert exts[AUDIO_LEVEL] == 10
    assert exts[MID] == 1
    assert params["encodings"] == [{"ssrc": params["encodings"][0]["ssrc"]}]  # no RTX for audio


def test_consumer_without_rtx_gets_no_rtx(router_caps: RtpCapabilities) -> None:
    caps = copy.deepcopy(CHROME_RTP_CAPABILITIES)
    caps["codecs"] = [c for c in caps["codecs"] if c["mimeType"] != "video/rtx"]
    _, _, consumable = _produce(router_caps, "video", CHROME_VIDEO_PRODUCE)
    params = _consumer_params(consumable, validate_rtp_capabilities(caps))
    assert [c["mimeType"] for c in params["codecs"]] == ["video/VP8"]
    assert set(params["encodings"][0]) == {"ssrc"}


def test_rtx_dropped_without_its_media_codec(router_caps: RtpCapabilities) -> None:
    # A producer offering VP8 and H264 (each with RTX), consumed by a client
    # without VP8: VP8's RTX matches the client's "video/rtx" but must go.
    params = copy.deepcopy(CHROME_VIDEO_PRODUCE)
    params["codecs"] += _h264_produce("42e01f")["codecs"]
    _, mapping, consumable = _produce(router_caps, "video", params)
    assert _pts(mapping) == {96: VP8, 97: VP8_RTX, 127: H264_CB, 125: H264_CB_RTX}
    assert can_consume(consumable, validate_rtp_capabilities(H264_ONLY_CAPABILITIES))
    consumer = _consumer_params(consumable, validate_rtp_capabilities(H264_ONLY_CAPABILITIES))
    assert [(c["mimeType"], c["payloadType"]) for c in consumer["codecs"]] == [
        ("video/H264", H264_CB),
        ("video/rtx", H264_CB_RTX),
    ]
    assert consumer["codecs"][1]["parameters"] == {"apt": H264_CB}


@pytest.mark.parametrize(
    ("uris", "kept"),
    [
        ([ABS_SEND_TIME, ORIENTATION, TOFFSET], {"goog-remb"}),  # REMB with abs-send-time
        ([ORIENTATION, TOFFSET], set()),  # neither without it
    ],
)
def test_rtcp_feedback_reduction(
    router_caps: RtpCapabilities, uris: list[str], kept: set[str]
) -> None:
    caps = copy.deepcopy(CHROME_RTP_CAPABILITIES)
    caps["headerExtensions"] = [
        e for e in caps["headerExtensions"] if e["kind"] == "audio" or e["uri"] in uris
    ]
    caps["codecs"][1]["rtcpFeedback"].append({"type": "transport-cc", "parameter": ""})
    _, _, consumable = _produce(router_caps, "video", CHROME_VIDEO_PRODUCE)
    params = _consumer_params(consumable, validate_rtp_capabilities(caps))
    types = {t for t, _ in _fb(params["codecs"][0])}
    assert types & {"goog-remb", "transport-cc"} == kept


def test_transport_cc_dropped_even_if_consumer_offers_it(router_caps: RtpCapabilities) -> None:
    # The router never offers transport-cc or its extension, so a consumer never gets them.
    caps = copy.deepcopy(CHROME_RTP_CAPABILITIES)
    caps["headerExtensions"].append({"kind": "video", "uri": TWCC, "preferredId": 5})
    caps["codecs"][1]["rtcpFeedback"].append({"type": "transport-cc", "parameter": ""})
    _, _, consumable = _produce(router_caps, "video", CHROME_VIDEO_PRODUCE)
    params = _consumer_params(consumable, validate_rtp_capabilities(caps))
    assert TWCC not in [e["uri"] for e in params["headerExtensions"]]
    assert ("goog-remb", "") in _fb(params["codecs"][0])
    assert ("transport-cc", "") not in _fb(params["codecs"][0])


# ---------------------------------------------------------------------------
# Incompatible clients and codec profiles
# ---------------------------------------------------------------------------


def test_client_without_vp8_cannot_consume_vp8(router_caps: RtpCapabilities, aiortc: Json) -> None:
    _, _, consumable = _produce(router_caps, "video", aiortc["video"])
    assert can_consume(consumable, validate_rtp_capabilities(H264_ONLY_CAPABILITIES)) is False
    with pytest.raises(UnsupportedError, match="no compatible media codecs"):
        get_consumer_rtp_parameters(consumable, validate_rtp_capabilities(H264_ONLY_CAPABILITIES))
    # Audio is still fine for that client.
    _, _, consumable = _produce(router_caps, "audio", aiortc["audio"])
    assert can_consume(consumable, validate_rtp_capabilities(H264_ONLY_CAPABILITIES)) is True


def _h264_produce(profile_level_id: str, packetization_mode: int = 1) -> Json:
    params = copy.deepcopy(CHROME_VIDEO_PRODUCE)
    params["codecs"] = [
        {
            "mimeType": "video/H264",
            "payloadType": 127,
            "clockRate": 90000,
            "parameters": {
                "level-asymmetry-allowed": 1,
                "packetization-mode": packetization_mode,
                "profile-level-id": profile_level_id,
            },
            "rtcpFeedback": copy.deepcopy(CHROME_VIDEO_FB),
        },
        {
            "mimeType": "video/rtx",
            "payloadType": 125,
            "clockRate": 90000,
            "parameters": {"apt": 127},
            "rtcpFeedback": [],
        },
    ]
    return params


def test_h264_profile_matching(router_caps: RtpCapabilities) -> None:
    # Main 3.1 maps onto the router's Main (4d0032); Constrained Baseline onto 42e01f.
    _, mapping, main = _produce(router_caps, "video", _h264_produce("4d001f"))
    assert _pts(mapping) == {127: H264_MAIN, 125: H264_MAIN_RTX}
    assert main.to_wire()["codecs"][0]["parameters"]["profile-level-id"] == "4d001f"
    _, mapping, _ = _produce(router_caps, "video", _h264_produce("42e01f"))
    assert _pts(mapping) == {127: H264_CB, 125: H264_CB_RTX}

    # A Constrained-Baseline-only client cannot receive Main; Chrome can.
    assert can_consume(main, validate_rtp_capabilities(H264_ONLY_CAPABILITIES)) is False
    with pytest.raises(UnsupportedError):
        get_consumer_rtp_parameters(main, validate_rtp_capabilities(H264_ONLY_CAPABILITIES))
    params = _consumer_params(main, validate_rtp_capabilities(CHROME_RTP_CAPABILITIES))
    assert [c["payloadType"] for c in params["codecs"]] == [H264_MAIN, H264_MAIN_RTX]


@pytest.mark.parametrize(
    "params",
    [
        _h264_produce("64001f"),  # High: the router has no High profile
        _h264_produce("42e01f", packetization_mode=0),  # the router has packetization-mode 1 only
        _h264_produce("zzzzzz"),  # not a profile-level-id
    ],
)
def test_h264_mismatch_is_unsupported(router_caps: RtpCapabilities, params: Json) -> None:
    with pytest.raises(UnsupportedError, match="video/H264"):
        _produce(router_caps, "video", params)


def test_vp9_profile_mismatch_is_unsupported(router_caps: RtpCapabilities) -> None:
    params = copy.deepcopy(CHROME_VIDEO_PRODUCE)
    params["codecs"] = [
        {
            "mimeType": "video/VP9",
            "payloadType": 98,
            "clockRate": 90000,
            "parameters": {"profile-id": 0},
            "rtcpFeedback": [],
        }
    ]
    with pytest.raises(UnsupportedError, match="video/VP9"):
        _produce(router_caps, "video", params)
    params["codecs"][0]["parameters"] = {"profile-id": 2}
    _, mapping, _ = _produce(router_caps, "video", params)
    assert _pts(mapping) == {98: VP9}


def test_rtx_without_its_media_codec_is_invalid(router_caps: RtpCapabilities) -> None:
    params = copy.deepcopy(CHROME_VIDEO_PRODUCE)
    params["codecs"][1]["parameters"]["apt"] = 55
    with pytest.raises(InvalidRequestError, match="apt=55"):
        _produce(router_caps, "video", params)


# ---------------------------------------------------------------------------
# Bad types
# ---------------------------------------------------------------------------


def _with(base: Json, path: list[Any], value: Any) -> Json:
    out = copy.deepcopy(base)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("caps", "field"),
    [
        ([], "rtpCapabilities"),
        ({"codecs": {}}, "codecs"),
        (_with(CHROME_RTP_CAPABILITIES, ["codecs", 0], "opus"), r"codecs\[0\]"),
        (_with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "mimeType"], None), "mimeType"),
        (_with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "clockRate"], "48000"), "clockRate"),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "preferredPayloadType"], 300),
            "preferredPayloadType",
        ),
        (_with(CHROME_RTP_CAPABILITIES, ["codecs", 2, "parameters", "apt"], "101"), "apt"),
        (_with(CHROME_RTP_CAPABILITIES, ["codecs", 1, "parameters"], {"x": [1]}), "parameters"),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 1, "rtcpFeedback"], [{"parameter": "pli"}]),
            "type",
        ),
        (_with(CHROME_RTP_CAPABILITIES, ["headerExtensions", 0, "kind"], "data"), "kind"),
        (
            _with(CHROME_RTP_CAPABILITIES, ["headerExtensions", 0, "preferredId"], "4"),
            "preferredId",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["headerExtensions", 0, "preferredEncrypt"], "false"),
            "preferredEncrypt",
        ),
        (_with(CHROME_RTP_CAPABILITIES, ["headerExtensions", 0, "direction"], "both"), "direction"),
    ],
)
def test_bad_capabilities(router_caps: RtpCapabilities, caps: Any, field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field) as info:
        validate_rtp_capabilities(caps)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ("rtp", "rtpParameters"),
        (_with(CHROME_VIDEO_PRODUCE, ["mid"], 1), "mid"),
        (_with(CHROME_VIDEO_PRODUCE, ["codecs"], []), "codecs"),
        (_with(CHROME_VIDEO_PRODUCE, ["codecs", 0, "payloadType"], True), "payloadType"),
        (_with(CHROME_VIDEO_PRODUCE, ["codecs", 0, "payloadType"], 128), "payloadType"),
        (_with(CHROME_VIDEO_PRODUCE, ["codecs", 0, "mimeType"], "VP8"), "mimeType"),
        (_with(CHROME_VIDEO_PRODUCE, ["codecs", 0, "mimeType"], "audio/opus"), "mix"),
        (_with(CHROME_VIDEO_PRODUCE, ["headerExtensions"], {}), "headerExtensions"),
        (
            _with(CHROME_VIDEO_PRODUCE, ["headerExtensions", 0, "id"], "4"),
            r"headerExtensions\[0\].id",
        ),
        (_with(CHROME_VIDEO_PRODUCE, ["headerExtensions", 0, "uri"], ""), "uri"),
        (_with(CHROME_VIDEO_PRODUCE, ["encodings"], []), "encodings"),
        (_with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "ssrc"], "1737421312"), "ssrc"),
        (_with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "rtx"], {"ssrc": None}), r"rtx.ssrc"),
        (_with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "dtx"], "false"), "dtx"),
        (_with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "rid"], 0), "rid"),
        (_with(CHROME_VIDEO_PRODUCE, ["encodings"], [{"ssrc": 1}, {"maxBitrate": 1}]), "rid"),
        (_with(CHROME_VIDEO_PRODUCE, ["rtcp"], []), "rtcp"),
        (_with(CHROME_VIDEO_PRODUCE, ["rtcp", "reducedSize"], "yes"), "reducedSize"),
    ],
)
def test_bad_rtp_parameters(params: Any, field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field):
        validate_rtp_parameters(params)
