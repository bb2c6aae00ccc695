"""The typed RTP model (sfu.models): real mediasoup-client data round-trips
exactly, mediasoup's defaults are filled in, and every kind of bad input is
refused with a message that names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.errors import InvalidRequestError
from sfu.models import (
    URI_MID,
    RtcpFeedback,
    RtpCapabilities,
    RtpCodecCapability,
    RtpCodecParameters,
    RtpEncodingParameters,
    RtpHeaderExtension,
    RtpParameters,
    RtxParameters,
)
from tests.unit.test_ortc import (
    CHROME_AUDIO_PRODUCE,
    CHROME_RTP_CAPABILITIES,
    CHROME_SIMULCAST_ENCODINGS,
    CHROME_VIDEO_PRODUCE,
    _with,
)

Json = dict[str, Any]

# mediasoup-client's Transport.produce() gives every encoding "active": true.
CHROME_SIMULCAST_PRODUCE: Json = {
    **CHROME_VIDEO_PRODUCE,
    "encodings": [{"active": True, **e} for e in CHROME_SIMULCAST_ENCODINGS],
}


# ----------------------------------------------------------------------- round trips


def test_chrome_capabilities_round_trip_exactly() -> None:
    caps = RtpCapabilities.from_wire(copy.deepcopy(CHROME_RTP_CAPABILITIES))
    assert caps.to_wire() == CHROME_RTP_CAPABILITIES
    opus = caps.codecs[0]
    assert (opus.kind, opus.mime_type, opus.preferred_payload_type, opus.channels) == (
        "audio",
        "audio/opus",
        100,
        2,
    )
    assert opus.parameters == {"minptime": 10, "useinbandfec": 1}
    assert caps.codecs[1].rtcp_feedback[3] == RtcpFeedback(type="nack", parameter="pli")
    assert caps.header_extensions[0] == RtpHeaderExtension(
        kind="audio", uri=URI_MID, preferred_id=1
    )


@pytest.mark.parametrize(
    "params", [CHROME_AUDIO_PRODUCE, CHROME_VIDEO_PRODUCE, CHROME_SIMULCAST_PRODUCE]
)
def test_chrome_produce_parameters_round_trip_exactly(params: Json) -> None:
    assert RtpParameters.from_wire(copy.deepcopy(params)).to_wire() == params


def test_typed_access_to_produce_parameters() -> None:
    video = RtpParameters.from_wire(CHROME_VIDEO_PRODUCE)
    assert video.kind == "video"
    assert [(c.payload_type, c.is_rtx) for c in video.codecs] == [(96, False), (97, True)]
    assert video.codecs[1].parameters["apt"] == 96
    assert video.encodings[0].rtx == RtxParameters(ssrc=3913184271)
    assert video.rtcp.cname == "kQ2mM3ec8fRkx+Ad"
    simulcast = RtpParameters.from_wire(CHROME_SIMULCAST_PRODUCE)
    assert [(e.rid, e.scale_resolution_down_by, e.max_bitrate) for e in simulcast.encodings] == [
        ("r0", 4, 500000),
        ("r1", 2, 1000000),
        ("r2", 1, 5000000),
    ]


def test_built_in_python_gives_mediasoups_wire_dict() -> None:
    # What a consumer's parameters look like when ORTC builds them.
    params = RtpParameters(
        codecs=[
            RtpCodecParameters(
                mime_type="video/VP8",
                payload_type=101,
                clock_rate=90000,
                rtcp_feedback=[
                    RtcpFeedback(type="nack"),
                    RtcpFeedback(type="nack", parameter="pli"),
                ],
            ),
            RtpCodecParameters(
                mime_type="video/rtx", payload_type=102, clock_rate=90000, parameters={"apt": 101}
            ),
        ],
        encodings=[
            RtpEncodingParameters(ssrc=11, rtx=RtxParameters(ssrc=12), scalability_mode="L3T3")
        ],
    )
    assert params.to_wire() == {
        "codecs": [
            {
                "mimeType": "video/VP8",
                "payloadType": 101,
                "clockRate": 90000,
                "parameters": {},
                "rtcpFeedback": [
                    {"type": "nack", "parameter": ""},
                    {"type": "nack", "parameter": "pli"},
                ],
            },
            {
                "mimeType": "video/rtx",
                "payloadType": 102,
                "clockRate": 90000,
                "parameters": {"apt": 101},
                "rtcpFeedback": [],
            },
        ],
        "headerExtensions": [],
        "encodings": [{"ssrc": 11, "rtx": {"ssrc": 12}, "scalabilityMode": "L3T3"}],
        "rtcp": {"reducedSize": True},
    }


# -------------------------------------------------------------------------- defaults


def test_mediasoups_defaults_are_filled_in() -> None:
    caps = RtpCapabilities.from_wire(
        {
            "codecs": [
                {"mimeType": "audio/opus", "clockRate": 48000},
                {"mimeType": "video/VP8", "clockRate": 90000, "channels": 2},
            ],
            "headerExtensions": [{"kind": "video", "uri": URI_MID, "preferredId": 1}],
        }
    )
    assert caps.to_wire() == {
        "codecs": [
            # kind from the mimeType, audio has one channel unless told.
            {
                "kind": "audio",
                "mimeType": "audio/opus",
                "clockRate": 48000,
                "channels": 1,
                "parameters": {},
                "rtcpFeedback": [],
            },
            # video has no channels.
            {
                "kind": "video",
                "mimeType": "video/VP8",
                "clockRate": 90000,
                "parameters": {},
                "rtcpFeedback": [],
            },
        ],
        "headerExtensions": [
            {
                "kind": "video",
                "uri": URI_MID,
                "preferredId": 1,
                "preferredEncrypt": False,
                "direction": "sendrecv",
            }
        ],
    }
    params = RtpParameters.from_wire(
        {
            "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000}],
            "headerExtensions": [{"uri": URI_MID, "id": 4}],
            "encodings": [{"ssrc": 1}],
        }
    )
    assert params.header_extensions[0].to_wire() == {
        "uri": URI_MID,
        "id": 4,
        "encrypt": False,
        "parameters": {},
    }
    assert params.rtcp.to_wire() == {"reducedSize": True}
    assert params.encodings[0].dtx is None  # unset: mediasoup's false, left off the wire


def test_null_is_absent_and_unknown_keys_are_dropped() -> None:
    params = RtpParameters.from_wire(
        {
            "mid": None,
            "codecs": [
                {
                    "mimeType": "audio/opus",
                    "payloadType": 111,
                    "clockRate": 48000,
                    "channels": None,
                    "rtcpFeedback": [{"type": "nack", "parameter": None}],
                    "sdpFmtpLine": "minptime=10",
                }
            ],
            "encodings": [{"ssrc": 1, "rid": None, "dtx": None, "futureField": 3}],
            "rtcp": None,
        }
    )
    assert params.to_wire() == {
        "codecs": [
            {
                "mimeType": "audio/opus",
                "payloadType": 111,
                "clockRate": 48000,
                "channels": 1,
                "parameters": {},
                "rtcpFeedback": [{"type": "nack", "parameter": ""}],
            }
        ],
        "headerExtensions": [],
        "encodings": [{"ssrc": 1}],
        "rtcp": {"reducedSize": True},
    }


def test_defaults_are_not_shared_between_objects() -> None:
    first, second = RtpCapabilities(), RtpCapabilities()
    first.codecs.append(RtpCodecCapability(kind="audio", mime_type="audio/opus", clock_rate=48000))
    assert second.codecs == []


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("caps", "message"),
    [
        ([], "rtpCapabilities must be an object, got array"),
        ({"codecs": {}}, "rtpCapabilities.codecs must be a list, got object"),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0], "opus"),
            "rtpCapabilities.codecs[0] must be an object, got 'opus'",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "mimeType"], None),
            "missing rtpCapabilities.codecs[0].mimeType",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "mimeType"], "opus"),
            "rtpCapabilities.codecs[0].mimeType must be a string like 'audio/opus', got 'opus'",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "kind"], "video"),
            "rtpCapabilities.codecs[0].kind 'video' does not match mimeType 'audio/opus'",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "clockRate"], "48000"),
            "rtpCapabilities.codecs[0].clockRate must be an integer, got '48000'",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "clockRate"], 0),
            "rtpCapabilities.codecs[0].clockRate 0 is out of range (at least 1)",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "channels"], 2.0),
            "rtpCapabilities.codecs[0].channels must be an integer, got 2.0",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "preferredPayloadType"], 300),
            "rtpCapabilities.codecs[0].preferredPayloadType 300 is out of range [0, 127]",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 0, "preferredPayloadType"], -1),
            "rtpCapabilities.codecs[0].preferredPayloadType -1 is out of range [0, 127]",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 2, "parameters", "apt"], "101"),
            "rtpCapabilities.codecs[2].parameters['apt'] must be an integer payload type",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 1, "parameters"], {"x": [1]}),
            "rtpCapabilities.codecs[1].parameters['x'] must be a string or a number, got [1]",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 1, "parameters"], {"x": True}),
            "rtpCapabilities.codecs[1].parameters['x'] must be a string or a number, got True",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 1, "rtcpFeedback"], [{"parameter": "pli"}]),
            "missing rtpCapabilities.codecs[1].rtcpFeedback[0].type",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["codecs", 1, "rtcpFeedback"], [{"type": ""}]),
            "rtpCapabilities.codecs[1].rtcpFeedback[0].type must be a non-empty string",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["headerExtensions", 0, "kind"], "data"),
            "rtpCapabilities.headerExtensions[0].kind must be 'audio' or 'video', got 'data'",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["headerExtensions", 0, "preferredId"], "4"),
            "rtpCapabilities.headerExtensions[0].preferredId must be an integer, got '4'",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["headerExtensions", 0, "preferredId"], 0),
            "rtpCapabilities.headerExtensions[0].preferredId 0 is out of range [1, 255]",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["headerExtensions", 0, "preferredEncrypt"], "false"),
            "rtpCapabilities.headerExtensions[0].preferredEncrypt must be a boolean, got 'false'",
        ),
        (
            _with(CHROME_RTP_CAPABILITIES, ["headerExtensions", 0, "direction"], "both"),
            "rtpCapabilities.headerExtensions[0].direction must be 'sendrecv', 'sendonly',"
            " 'recvonly' or 'inactive', got 'both'",
        ),
    ],
)
def test_bad_capabilities_name_the_field(caps: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        RtpCapabilities.from_wire(caps)
    assert str(info.value) == message
    assert isinstance(info.value, TypeError)  # mediasoup's TypeError: protoo errorCode 400
    assert info.value.code == 400


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("rtp", "rtpParameters must be an object, got 'rtp'"),
        (_with(CHROME_VIDEO_PRODUCE, ["mid"], 1), "rtpParameters.mid must be a string, got 1"),
        (
            _with(CHROME_VIDEO_PRODUCE, ["codecs"], []),
            "rtpParameters.codecs must be a non-empty list",
        ),
        ({"encodings": [{"ssrc": 1}]}, "missing rtpParameters.codecs"),
        (
            _with(CHROME_VIDEO_PRODUCE, ["codecs", 0, "payloadType"], True),
            "rtpParameters.codecs[0].payloadType must be an integer, got True",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["codecs", 0, "payloadType"], 128),
            "rtpParameters.codecs[0].payloadType 128 is out of range [0, 127]",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["codecs", 0, "payloadType"], -96),
            "rtpParameters.codecs[0].payloadType -96 is out of range [0, 127]",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["codecs", 0, "mimeType"], "VP8"),
            "rtpParameters.codecs[0].mimeType must be a string like 'audio/opus', got 'VP8'",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["codecs", 0, "mimeType"], "audio/opus"),
            "rtpParameters.codecs mix audio and video codecs",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["headerExtensions"], {}),
            "rtpParameters.headerExtensions must be a list, got object",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["headerExtensions", 0, "id"], "4"),
            "rtpParameters.headerExtensions[0].id must be an integer, got '4'",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["headerExtensions", 0, "uri"], ""),
            "rtpParameters.headerExtensions[0].uri must be a non-empty string",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings"], []),
            "rtpParameters.encodings must be a non-empty list",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "ssrc"], "1737421312"),
            "rtpParameters.encodings[0].ssrc must be an integer, got '1737421312'",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "ssrc"], 2**32),
            "rtpParameters.encodings[0].ssrc 4294967296 is out of range [0, 4294967295]",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "ssrc"], -1),
            "rtpParameters.encodings[0].ssrc -1 is out of range [0, 4294967295]",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "rtx"], {"ssrc": None}),
            "missing rtpParameters.encodings[0].rtx.ssrc",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "rtx"], 5),
            "rtpParameters.encodings[0].rtx must be an object, got 5",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "dtx"], "false"),
            "rtpParameters.encodings[0].dtx must be a boolean, got 'false'",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "rid"], 0),
            "rtpParameters.encodings[0].rid must be a string, got 0",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "maxBitrate"], -1),
            "rtpParameters.encodings[0].maxBitrate -1 is out of range (at least 0)",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "scaleResolutionDownBy"], "2"),
            "rtpParameters.encodings[0].scaleResolutionDownBy must be a number, got '2'",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings", 0, "priority"], "urgent"),
            "rtpParameters.encodings[0].priority must be 'very-low', 'low', 'medium' or 'high',"
            " got 'urgent'",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["encodings"], [{"ssrc": 1}, {"maxBitrate": 1}]),
            "rtpParameters.encodings with several encodings each needs an ssrc or a rid",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["rtcp"], []),
            "rtpParameters.rtcp must be an object, got array",
        ),
        (
            _with(CHROME_VIDEO_PRODUCE, ["rtcp", "reducedSize"], "yes"),
            "rtpParameters.rtcp.reducedSize must be a boolean, got 'yes'",
        ),
    ],
)
def test_bad_parameters_name_the_field(params: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        RtpParameters.from_wire(params)
    assert str(info.value) == message


def test_error_root_can_be_named() -> None:
    with pytest.raises(InvalidRequestError, match=r"^codecs\[0\] must be an object"):
        RtpCapabilities.from_wire({"codecs": [1]}, where="")
    with pytest.raises(InvalidRequestError, match=r"^missing mediaCodecs\[0\]\.clockRate$"):
        RtpCodecCapability.from_wire({"mimeType": "audio/opus"}, where="mediaCodecs[0]")


# -------------------------------------------------------------------------- property

_optional_encoding_fields: dict[str, st.SearchStrategy[Any]] = {
    "ssrc": st.integers(0, 0xFFFFFFFF),
    "rid": st.text(max_size=8),
    "codecPayloadType": st.integers(0, 127),
    "rtx": st.fixed_dictionaries({"ssrc": st.integers(0, 0xFFFFFFFF)}),
    "dtx": st.booleans(),
    "scalabilityMode": st.sampled_from(["L1T1", "L1T3", "L3T3_KEY", "S2T2"]),
    "scaleResolutionDownBy": st.floats(0, 16),
    "maxBitrate": st.integers(0, 10**8),
    "maxFramerate": st.floats(0, 120),
    "adaptivePtime": st.booleans(),
    "priority": st.sampled_from(["very-low", "low", "medium", "high"]),
    "networkPriority": st.sampled_from(["very-low", "low", "medium", "high"]),
    "active": st.booleans(),
}
_parameter_values = st.one_of(st.text(max_size=8), st.integers(-(2**31), 2**31), st.floats(0, 1e6))


@given(
    encoding=st.fixed_dictionaries({}, optional=_optional_encoding_fields),
    parameters=st.dictionaries(st.text(min_size=1, max_size=12), _parameter_values, max_size=4),
    payload_type=st.integers(0, 127),
    cname=st.one_of(st.none(), st.text(max_size=16)),
)
def test_any_valid_parameters_round_trip(
    encoding: Json, parameters: Json, payload_type: int, cname: str | None
) -> None:
    parameters.pop("apt", None)  # apt must be an integer: covered by its own test
    wire: Json = {
        "codecs": [
            {
                "mimeType": "video/VP8",
                "payloadType": payload_type,
                "clockRate": 90000,
                "parameters": parameters,
                "rtcpFeedback": [{"type": "nack", "parameter": ""}],
            }
        ],
        "headerExtensions": [],
        "encodings": [encoding],
        "rtcp": {"reducedSize": True} if cname is None else {"cname": cname, "reducedSize": True},
    }
    assert RtpParameters.from_wire(copy.deepcopy(wire)).to_wire() == wire
